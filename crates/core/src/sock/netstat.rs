//! `netstat [-a] [-f inet|inet6] [-p tcp|udp]`: the PCBs as OpenBSD's
//! netstat(1) prints them (inet.c protopr / inetprint / inet6print): one
//! block per protocol and family, `ADDR.PORT` with `*` for an unspecified
//! address or port, TCP states by their tcpstates[] names; listening and
//! unbound sockets only with `-a`.

use super::Sockets;
use softnet_tcp::State;
use std::fmt::Write;
use std::net::SocketAddr;

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
