//! `netstat [-a] [-f inet|inet6] [-p tcp|udp]`: the PCBs as OpenBSD's
//! netstat(1) prints them (inet.c protopr / inetprint / inet6print): one
//! block per protocol and family, `ADDR.PORT` with `*` for an unspecified
//! address or port, TCP states by their tcpstates[] names; listening and
//! unbound sockets only with `-a`. And `netstat -s`'s udp and tcp
//! sections (udp_stats / tcp_stats).

use super::Sockets;
use crate::percpu::{Counter, PerWorker};
use crate::stats::{p, StackStats};
use softnet_tcp::{ConnStats, State};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// tcp_fsm.h's tcpstates[].
pub fn state_name(s: State) -> &'static str {
    match s {
        State::Closed => "CLOSED",
        State::Listen => "LISTEN",
        State::SynSent => "SYN_SENT",
        State::SynReceived => "SYN_RCVD",
        State::Established => "ESTABLISHED",
        State::CloseWait => "CLOSE_WAIT",
        State::FinWait1 => "FIN_WAIT_1",
        State::Closing => "CLOSING",
        State::LastAck => "LAST_ACK",
        State::FinWait2 => "FIN_WAIT_2",
        State::TimeWait => "TIME_WAIT",
    }
}

/// inetprint / inet6print: `ADDR.PORT`, `*` for the unspecified address
/// or port 0, padded to the family's column width.
fn addr(a: Option<SocketAddr>, width: usize) -> String {
    let s = match a {
        None => "*.*".to_string(),
        Some(a) => {
            let ip = if a.ip().is_unspecified() { "*".to_string() } else { a.ip().to_string() };
            let port = if a.port() == 0 { "*".to_string() } else { a.port().to_string() };
            format!("{ip}.{port}")
        }
    };
    format!(" {s:<width$.width$}")
}

/// Which sockets `netstat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// `-a`: listening and unconnected sockets too.
    pub all: bool,
    pub inet: bool,
    pub inet6: bool,
    pub tcp: bool,
    pub udp: bool,
}

struct Row {
    local: SocketAddr,
    remote: Option<SocketAddr>,
    recv_q: usize,
    send_q: usize,
    state: Option<State>,
}

impl Sockets {
    /// The text of `netstat [-a]` for these PCBs.
    pub fn netstat(&self, f: Filter) -> String {
        let mut tcp: Vec<Row> = self
            .tcp_snapshot()
            .into_iter()
            .map(|p| Row { local: p.local, remote: p.remote, recv_q: p.recv_q, send_q: p.send_q, state: Some(p.state) })
            .collect();
        let mut udp: Vec<Row> = self
            .udp_snapshot()
            .into_iter()
            .map(|(local, remote, recv_q)| Row { local, remote, recv_q, send_q: 0, state: None })
            .collect();
        let key = |r: &Row| (r.local, r.remote);
        tcp.sort_by_key(key);
        udp.sort_by_key(key);
        let mut out = String::new();
        for (v6, on) in [(false, f.inet), (true, f.inet6)] {
            if !on {
                continue;
            }
            for (name, rows, on) in [("tcp", &tcp, f.tcp), ("udp", &udp, f.udp)] {
                if !on {
                    continue;
                }
                let shown: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.local.is_ipv6() == v6)
                    .filter(|r| f.all || (r.remote.is_some() && r.state != Some(State::Listen)))
                    .collect();
                if shown.is_empty() {
                    continue;
                }
                let width = if v6 { 39 } else { 22 };
                let _ = writeln!(
                    out,
                    "Active Internet{} connections{}",
                    if v6 { "6" } else { "" },
                    if f.all { " (including servers)" } else { "" }
                );
                let _ = writeln!(
                    out,
                    "{:<7.7} {:<6.6} {:<6.6}  {:<width$.width$} {:<width$.width$}{}",
                    "Proto",
                    "Recv-Q",
                    "Send-Q",
                    "Local Address",
                    "Foreign Address",
                    if name == "tcp" { " TCP-State" } else { " (state)" }
                );
                let pname = if v6 { format!("{name}6") } else { name.to_string() };
                for r in shown {
                    let _ = write!(out, "{:<7.7} {:>6} {:>6} ", pname, r.recv_q, r.send_q);
                    out.push_str(&addr(Some(r.local), width));
                    out.push_str(&addr(r.remote, width));
                    if let Some(s) = r.state {
                        let _ = write!(out, " {}", state_name(s));
                    }
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// The per-connection counters (`softnet_tcp::ConnStats`) of connections
/// gone from the table, added up when each leaves (an event per
/// connection, not per packet); `netstat -s` adds the live ones.
#[derive(Default, Debug)]
pub struct ConnTotals {
    segs_out: AtomicU64,
    bytes_out: AtomicU64,
    rexmt_segs: AtomicU64,
    rexmt_bytes: AtomicU64,
    rto_expired: AtomicU64,
    fast_recoveries: AtomicU64,
    challenge_acks: AtomicU64,
    challenge_acks_limited: AtomicU64,
    ooo_dropped: AtomicU64,
    window_probes: AtomicU64,
    keepalive_probes: AtomicU64,
}

/// The fields of `ConnStats` and `ConnTotals`, in one list.
macro_rules! conn_fields {
    ($m:ident) => {
        $m!(
            segs_out,
            bytes_out,
            rexmt_segs,
            rexmt_bytes,
            rto_expired,
            fast_recoveries,
            challenge_acks,
            challenge_acks_limited,
            ooo_dropped,
            window_probes,
            keepalive_probes
        )
    };
}

impl ConnTotals {
    /// A connection's counters, as it leaves the table.
    pub(crate) fn add(&self, c: &ConnStats) {
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f.fetch_add(c.$f, Ordering::Relaxed); )* };
        }
        conn_fields!(add);
    }

    fn load_into(&self, c: &mut ConnStats) {
        macro_rules! load {
            ($($f:ident),*) => { $( c.$f += self.$f.load(Ordering::Relaxed); )* };
        }
        conn_fields!(load);
    }
}

fn sum_into(c: &mut ConnStats, x: &ConnStats) {
    macro_rules! sum {
        ($($f:ident),*) => { $( c.$f += x.$f; )* };
    }
    conn_fields!(sum);
}

impl Sockets {
    /// Every connection's counters: the closed ones' totals and the live.
    pub fn conn_stats(&self) -> ConnStats {
        let mut c = ConnStats::default();
        self.conn_totals.load_into(&mut c);
        let live: Vec<_> = self.conns.iter().flat_map(|t| t.read().values().cloned().collect::<Vec<_>>()).collect();
        for conn in live {
            sum_into(&mut c, conn.inner.lock().tcb.stats());
        }
        c
    }
}

/// Two counted values on one line ("%u packet%s (%u byte%s)").
fn p2(o: &mut String, a: u64, b: u64, text: &str) {
    let pl = |v: u64| if v == 1 { "" } else { "s" };
    let line = text
        .replacen("%u", &a.to_string(), 1)
        .replacen("%s", pl(a), 1)
        .replacen("%u", &b.to_string(), 1)
        .replacen("%s", pl(b), 1);
    o.push_str(&line);
    o.push('\n');
}

/// `netstat -s`'s udp section (OpenBSD's udp_stats): the router's input
/// counters, and with the sockets, what they took and sent.
pub fn format_udp_s(o: &mut String, stats: &PerWorker<StackStats>, socks: Option<&Sockets>) {
    let s = |f: &dyn Fn(&StackStats) -> &Counter| stats.iter().map(|w| f(w).get()).sum::<u64>();
    let _ = writeln!(o, "udp:");
    p(o, s(&|w| &w.transport.udp_ipackets), "\t%u datagram%s received");
    p(o, s(&|w| &w.transport.udp_hdrops), "\t%u with incomplete header");
    p(o, s(&|w| &w.transport.udp_badlen), "\t%u with bad data length field");
    p(o, s(&|w| &w.transport.udp_badsum), "\t%u with bad checksum");
    p(o, s(&|w| &w.transport.udp_noport), "\t%u dropped due to no socket");
    p(o, s(&|w| &w.transport.udp_noportbcast), "\t%u broadcast/multicast datagram%s dropped due to no socket");
    if let Some(so) = socks {
        p(o, so.stats.udp_fullsock.load(Ordering::Relaxed), "\t%u dropped due to full socket buffers");
        p(o, so.stats.udp_delivered.load(Ordering::Relaxed), "\t%u delivered");
    }
    p(o, s(&|w| &w.transport.udp_opackets), "\t%u datagram%s output");
}

/// `netstat -s`'s divert section (OpenBSD's divert_stats): what pf's
/// `divert-packet` handed the divert sockets and what they wrote back.
pub fn format_divert_s(o: &mut String, socks: &Sockets) {
    let d = socks.divert_stats();
    let _ = writeln!(o, "divert:");
    p(o, d.ipackets.load(Ordering::Relaxed), "\t%u total packet%s received");
    p(o, d.noport.load(Ordering::Relaxed), "\t%u dropped due to no socket");
    p(o, d.fullsock.load(Ordering::Relaxed), "\t%u dropped due to full socket buffers");
    p(o, d.opackets.load(Ordering::Relaxed), "\t%u packet%s output");
    p(o, d.errors.load(Ordering::Relaxed), "\t%u error%s");
}

/// `netstat -s`'s tcp section (OpenBSD's tcp_stats, with FreeBSD's lines
/// for SYN cookies and the listen queue, and RFC 5961's challenge ACKs):
/// the router's input counters, and with the sockets the connections',
/// their engines' and the SYN cache's.
pub fn format_tcp_s(o: &mut String, stats: &PerWorker<StackStats>, socks: Option<&Sockets>) {
    let s = |f: &dyn Fn(&StackStats) -> &Counter| stats.iter().map(|w| f(w).get()).sum::<u64>();
    let _ = writeln!(o, "tcp:");
    let c = socks.map(Sockets::conn_stats);
    if let Some(c) = &c {
        p(o, c.segs_out, "\t%u packet%s sent");
        p2(o, c.segs_out, c.bytes_out, "\t\t%u data packet%s (%u byte%s)");
        p2(o, c.rexmt_segs, c.rexmt_bytes, "\t\t%u data packet%s (%u byte%s) retransmitted");
        p(o, c.window_probes, "\t\t%u window probe packet%s");
    }
    p(o, s(&|w| &w.transport.tcp_rcvtotal), "\t%u packet%s received");
    p(o, s(&|w| &w.transport.tcp_rcvacktoomuch), "\t\t%u ack%s for unsent data");
    p(o, s(&|w| &w.transport.tcp_pawsdrop), "\t\t%u old duplicate packet%s");
    p2(
        o,
        s(&|w| &w.transport.tcp_rcvpackafterwin),
        s(&|w| &w.transport.tcp_rcvbyteafterwin),
        "\t\t%u packet%s (%u byte%s) of data after window",
    );
    p(o, s(&|w| &w.transport.tcp_rcvafterclose), "\t\t%u packet%s received after close");
    p(o, s(&|w| &w.transport.tcp_steermiss), "\t\t%u packet%s processed off their connection's worker");
    p(o, s(&|w| &w.transport.tcp_icmpbadseq), "\t\t%u ICMP error%s ignored (not about a segment in flight)");
    if let Some(c) = &c {
        p(o, c.ooo_dropped, "\t\t%u out-of-order packet%s dropped (queue full)");
    }
    p(o, s(&|w| &w.transport.tcp_rcvbadopt), "\t\t%u discarded for bad option%s");
    p(o, s(&|w| &w.transport.tcp_rcvbadsum), "\t%u discarded for bad checksum%s");
    p(o, s(&|w| &w.transport.tcp_rcvshort), "\t%u discarded because packet too short");
    if let (Some(so), Some(c)) = (socks, &c) {
        let st = &so.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        p(o, l(&st.tcp_connattempt), "\t%u connection request%s");
        p(o, l(&st.tcp_accepts), "\t%u connection accept%s");
        p(o, l(&st.tcp_connects), "\t%u connection%s established (including accepts)");
        p2(o, l(&st.tcp_closed), l(&st.tcp_drops), "\t%u connection%s closed (including %u drop%s)");
        p(o, l(&st.tcp_listendrop), "\t%u listen queue overflow%s");
        p(o, l(&st.tcp_connlimit), "\t%u connection%s refused at the connection limit");
        p(o, l(&st.tcp_tw_recycled), "\t%u connection%s in TIME_WAIT recycled at the connection limit");
        p(o, c.rto_expired, "\t%u retransmit timeout%s");
        p(o, c.keepalive_probes, "\t%u keepalive probe%s sent");
        p(o, c.fast_recoveries, "\t%u fast recovery episode%s");
        p(o, c.challenge_acks, "\t%u challenge ACK%s sent");
        p(o, s(&|w| &w.transport.tcp_badrst), "\t\t%u for a RST in the window");
        p(o, s(&|w| &w.transport.tcp_badsyn), "\t\t%u for a SYN on a synchronized connection");
        p(o, c.challenge_acks_limited, "\t\t%u not sent (rate limit)");
        let sc = &so.syncache.stats;
        p(o, l(&sc.added), "\t%u SYN cache entries added");
        p(o, l(&sc.completed), "\t\t%u completed");
        p(o, l(&sc.timed_out), "\t\t%u timed out");
        p(o, l(&sc.reset), "\t\t%u dropped due to RST");
        p(o, l(&sc.overflow), "\t\t%u not added, the cache full (a cookie sent)");
        p(o, l(&sc.dupsyn), "\t%u duplicate SYN%s received for entries already in the cache");
        p(o, l(&sc.cookies_sent), "\t%u cookie%s sent");
        p(o, l(&sc.cookies_ok), "\t%u cookie%s received");
        p(o, l(&sc.cookies_bad), "\t%u bad cookie%s");
    }
    p(o, s(&|w| &w.transport.tcp_sndrst), "\t%u reset%s sent");
}
