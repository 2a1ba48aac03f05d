//! `synproxy state`: pf completes the TCP handshake with the client
//! itself and opens the connection to the server only once the client
//! answered, then splices the two sequence spaces (pf.c's pf_synproxy and
//! the proxy start of pf_create_state).
//!
//! * The client's SYN makes the state, its source peer in
//!   `tcps::PROXY_SRC`, and pf answers with a SYN|ACK of its own initial
//!   sequence number (`src.seqhi`, from the worker's random source); the
//!   SYN goes no further (pf's PF_SYNPROXY_DROP). A SYN sent again gets
//!   the same SYN|ACK; a client that never completes the handshake never
//!   reaches the server.
//! * The client's ACK of it moves the state to `tcps::PROXY_DST`, and pf
//!   sends the server a SYN as if from the client (another random
//!   initial sequence number, `dst.seqhi`), through pf out as pf_send_tcp
//!   without a tag does.
//! * The server's SYN|ACK (seen on its way to the client) is answered
//!   with an ACK to the server and an ACK to the client; the state is then
//!   established, each side's sequence numbers shifted by `seqdiff` as
//!   `modulate state` shifts them, without window scaling.
//!
//! pf keeps the MSS it offered in `src.mss`; softnet's peer has no such
//! field (a state slot stays four cache lines), so it is kept in
//! `dst.max_win` while the handshake is proxied, which pf sets only when
//! the server answers. pf_calc_mss bounds the MSS by the MTU of both
//! addresses' routes; softnet takes the MTU of the interface the SYN came
//! in on for both.

use super::*;

/// TCP's default MSS (`tcp_mssdflt`): offered when the SYN had none.
const TCP_MSSDFLT: u16 = 512;
/// IPv4 and TCP headers without options.
const TCPIP_HLEN: u32 = 40;
/// IPv6 and TCP headers without options (pf_calc_mss for AF_INET6).
const TCPIP6_HLEN: u32 = 60;

/// A segment the proxy sends (pf_send_tcp's arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProxySend {
    pub src: PfAddr,
    pub dst: PfAddr,
    /// The addresses' family.
    pub af: Af,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    pub mss: Option<u16>,
    /// pf_send_tcp's `tag`: pf out lets it by (PF_TAG_GENERATED). The
    /// segments toward the server go through pf out.
    pub generated: bool,
}

/// What the proxy made of a packet of a state whose handshake it proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProxyStep {
    /// PF_SYNPROXY_DROP: the packet goes no further; these are sent.
    Consume([Option<ProxySend>; 2]),
    /// PF_DROP (`synproxy`): not the segment the proxy waits for.
    Drop,
    /// The client's source node refused one more connection
    /// (pf_src_connlimit): PF_DROP (`src-limit`).
    SrcLimit,
}

/// Whether a TCP state's handshake is proxied (its source peer in one of
/// the proxy states).
#[inline]
pub(super) fn proxying(st: &StateData) -> bool {
    st.src.state >= tcps::PROXY_SRC
}

/// pf_get_mss then pf_calc_mss: the SYN's MSS option (`tcp_mssdflt`
/// without one), bounded by what fits the MTU `mtu`, at least 64.
pub(super) fn syn_mss(pkt: &[u8], pd: &Pd, mtu: u32) -> u16 {
    let offer = pkt
        .get(pd.hlen()..pd.hlen() + pd.tcp_hlen())
        .and_then(|h| TcpPacket::new_checked(h).ok())
        .and_then(|t| {
            t.option_iter().find_map(|o| match o {
                Ok(softnet_wire::tcp::TcpOption::MaxSegmentSize(m)) => Some(m),
                _ => None,
            })
        })
        .unwrap_or(TCP_MSSDFLT);
    let hlen = if pd.af == Af::Inet6 { TCPIP6_HLEN } else { TCPIP_HLEN };
    let fit = (mtu.saturating_sub(hlen).min(u16::MAX as u32) as u16).max(TCP_MSSDFLT);
    offer.min(fit).max(64)
}

/// pf_create_state's proxy start for an inbound SYN: the state's source
/// peer waits in PROXY_SRC with pf's own initial sequence number; the
/// SYN|ACK to send the client.
pub(super) fn start(st: &mut StateData, pd: &Pd, mss: u16, iss: u32) -> ProxySend {
    st.src.state = tcps::PROXY_SRC;
    st.src.seqhi = iss;
    st.dst.max_win = mss;
    ProxySend {
        src: pd.dst,
        dst: pd.src,
        af: pd.af,
        sport: pd.dport,
        dport: pd.sport,
        seq: iss,
        ack: pd.tcp.seq.wrapping_add(1),
        flags: TH_SYN | TH_ACK,
        win: 0,
        mss: Some(mss),
        generated: true,
    }
}

/// pf_synproxy for a packet of a proxied state: `fwd` when it comes from
/// the client (the state's direction); `wire` the state's key as the
/// client sees it, `stack` as the server does (its translated key when
/// it translates); `iss` draws the server side's initial sequence number;
/// `connlimit` is pf_src_connlimit (true: refused). The state is updated.
pub(super) fn step(
    st: &mut StateData,
    fwd: bool,
    pd: &Pd,
    wire: &StateKey,
    stack: &StateKey,
    iss: impl FnOnce() -> u32,
    connlimit: impl FnOnce(&mut StateData) -> bool,
) -> ProxyStep {
    let seg = &pd.tcp;
    let mss = st.dst.max_win;
    if st.src.state == tcps::PROXY_SRC {
        if !fwd {
            return ProxyStep::Consume([None, None]);
        }
        if seg.flags & TH_SYN != 0 {
            // The client sent its SYN again: the same answer.
            if seg.seq != st.src.seqlo {
                return ProxyStep::Drop;
            }
            let again = ProxySend {
                src: pd.dst,
                dst: pd.src,
                af: pd.af,
                sport: pd.dport,
                dport: pd.sport,
                seq: st.src.seqhi,
                ack: seg.seq.wrapping_add(1),
                flags: TH_SYN | TH_ACK,
                win: 0,
                mss: Some(mss),
                generated: true,
            };
            return ProxyStep::Consume([Some(again), None]);
        }
        if seg.flags & (TH_ACK | TH_RST | TH_FIN) != TH_ACK
            || seg.ack != st.src.seqhi.wrapping_add(1)
            || seg.seq != st.src.seqlo.wrapping_add(1)
        {
            return ProxyStep::Drop;
        }
        if connlimit(st) {
            return ProxyStep::SrcLimit;
        }
        st.src.state = tcps::PROXY_DST;
    }
    // PROXY_DST
    if fwd {
        if seg.flags & (TH_SYN | TH_ACK) != TH_ACK
            || seg.ack != st.src.seqhi.wrapping_add(1)
            || seg.seq != st.src.seqlo.wrapping_add(1)
        {
            return ProxyStep::Drop;
        }
        st.src.max_win = seg.win.max(1);
        if st.dst.seqhi == 1 {
            st.dst.seqhi = iss();
        }
        // The SYN to the server, as if from the client.
        let syn = ProxySend {
            src: stack.addr[0],
            dst: stack.addr[1],
            af: stack.af,
            sport: stack.port[0],
            dport: stack.port[1],
            seq: st.dst.seqhi,
            ack: 0,
            flags: TH_SYN,
            win: 0,
            mss: Some(mss),
            generated: false,
        };
        return ProxyStep::Consume([Some(syn), None]);
    }
    if seg.flags & (TH_SYN | TH_ACK) != TH_SYN | TH_ACK || seg.ack != st.dst.seqhi.wrapping_add(1) {
        return ProxyStep::Drop;
    }
    st.dst.max_win = seg.win.max(1);
    st.dst.seqlo = seg.seq;
    let to_server = ProxySend {
        src: pd.dst,
        dst: pd.src,
        af: pd.af,
        sport: pd.dport,
        dport: pd.sport,
        seq: seg.ack,
        ack: seg.seq.wrapping_add(1),
        flags: TH_ACK,
        win: st.src.max_win,
        mss: None,
        generated: false,
    };
    let to_client = ProxySend {
        src: wire.addr[1],
        dst: wire.addr[0],
        af: wire.af,
        sport: wire.port[1],
        dport: wire.port[0],
        seq: st.src.seqhi.wrapping_add(1),
        ack: st.src.seqlo.wrapping_add(1),
        flags: TH_ACK,
        win: st.dst.max_win,
        mss: None,
        generated: true,
    };
    // The splice: each side's numbers shifted into the other's.
    st.src.seqdiff = st.dst.seqhi.wrapping_sub(st.src.seqlo);
    st.dst.seqdiff = st.src.seqhi.wrapping_sub(st.dst.seqlo);
    st.src.seqhi = st.src.seqlo.wrapping_add(st.dst.max_win as u32);
    st.dst.seqhi = st.dst.seqlo.wrapping_add(st.src.max_win as u32);
    st.src.wscale = 0;
    st.dst.wscale = 0;
    st.src.state = tcps::ESTABLISHED;
    st.dst.state = tcps::ESTABLISHED;
    ProxyStep::Consume([Some(to_server), Some(to_client)])
}

/// Sends what the proxy asked for (pf_send_tcp; TTL or hop limit 64).
pub(super) fn send(sends: &[Option<ProxySend>; 2], bufs: &mut dyn BufferSource, replies: &mut FilterReplies) {
    for s in sends.iter().flatten() {
        let (src, dst) = (s.src, s.dst);
        let built = match s.af {
            Af::Inet => build_tcp_opts(
                bufs,
                src.v4(),
                dst.v4(),
                s.sport,
                s.dport,
                s.seq,
                s.ack,
                s.flags,
                s.win,
                DEFAULT_TTL,
                s.mss,
            ),
            Af::Inet6 => {
                let seg = Seg6 { sport: s.sport, dport: s.dport, seq: s.seq, ack: s.ack, flags: s.flags, win: s.win };
                build_tcp6_opts(bufs, src.v6(), dst.v6(), &seg, DEFAULT_TTL, s.mss)
            }
        };
        if let Some(mut p) = built {
            if !s.generated {
                p.meta.flags &= !mflags::PF_GENERATED;
            }
            replies.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pd(src: &str, sport: u16, dst: &str, dport: u16, flags: u8, seq: u32, ack: u32) -> Pd {
        let mut p = Pd::ip(src.parse().unwrap(), dst.parse().unwrap(), PROTO_TCP, 0, 20, 40);
        p.sport = sport;
        p.dport = dport;
        p.tcp = TcpSeg { flags, seq, ack, win: 1000, len: 0, wscale: 0 };
        p
    }

    fn key(a: &str, pa: u16, b: &str, pb: u16) -> StateKey {
        StateKey {
            addr: [a.parse().unwrap(), b.parse().unwrap()],
            port: [pa, pb],
            proto: PROTO_TCP,
            af: Af::Inet,
            rtable: 0,
        }
    }

    #[test]
    fn the_handshake_is_completed_with_the_client_then_opened_to_the_server_and_spliced() {
        let wire = key("10.0.1.2", 40000, "10.0.2.2", 80);
        let syn = pd("10.0.1.2", 40000, "10.0.2.2", 80, TH_SYN, 1000, 0);
        let mut st = StateData::default();
        crate::tcp_track::init_state(&mut st, &syn.tcp, None);
        let synack = start(&mut st, &syn, 1460, 7000);
        assert_eq!((synack.seq, synack.ack, synack.flags, synack.mss), (7000, 1001, TH_SYN | TH_ACK, Some(1460)));
        assert_eq!((synack.src, synack.dport), (syn.dst, 40000));
        assert!(synack.generated);
        // Nothing from the server's side is accepted yet.
        let stray = pd("10.0.2.2", 80, "10.0.1.2", 40000, TH_SYN | TH_ACK, 5, 1001);
        assert_eq!(step(&mut st, false, &stray, &wire, &wire, || 1, |_| false), ProxyStep::Consume([None, None]));
        // A wrong ACK is dropped; the SYN again gets the same SYN|ACK.
        let bad = pd("10.0.1.2", 40000, "10.0.2.2", 80, TH_ACK, 1001, 7005);
        assert_eq!(step(&mut st, true, &bad, &wire, &wire, || 1, |_| false), ProxyStep::Drop);
        assert_eq!(step(&mut st, true, &syn, &wire, &wire, || 1, |_| false), ProxyStep::Consume([Some(synack), None]));
        assert_eq!(st.src.state, tcps::PROXY_SRC);
        // The client's ACK: the SYN to the server, through pf out.
        let ack = pd("10.0.1.2", 40000, "10.0.2.2", 80, TH_ACK, 1001, 7001);
        let ProxyStep::Consume([Some(s), None]) = step(&mut st, true, &ack, &wire, &wire, || 9000, |_| false) else {
            panic!("no SYN to the server")
        };
        assert_eq!((s.src, s.dst, s.sport, s.dport), (syn.src, syn.dst, 40000, 80));
        assert_eq!((s.seq, s.flags, s.mss, s.generated), (9000, TH_SYN, Some(1460), false));
        assert_eq!(st.src.state, tcps::PROXY_DST);
        // The server's SYN|ACK: an ACK each way, the state established.
        let sa = pd("10.0.2.2", 80, "10.0.1.2", 40000, TH_SYN | TH_ACK, 3000, 9001);
        let ProxyStep::Consume([Some(a), Some(c)]) = step(&mut st, false, &sa, &wire, &wire, || 1, |_| false) else {
            panic!("no ACKs")
        };
        assert_eq!((a.dst, a.seq, a.ack, a.flags, a.generated), (sa.src, 9001, 3001, TH_ACK, false));
        assert_eq!((c.dst, c.dport, c.seq, c.ack, c.generated), (syn.src, 40000, 7001, 1001, true));
        assert_eq!((st.src.state, st.dst.state), (tcps::ESTABLISHED, tcps::ESTABLISHED));
        // Client seq 1001 is server-side 9001; server seq 3001 is client-side 7001.
        assert_eq!(1001u32.wrapping_add(st.src.seqdiff), 9001);
        assert_eq!(3001u32.wrapping_add(st.dst.seqdiff), 7001);
    }

    #[test]
    fn a_source_limit_refuses_the_completed_handshake() {
        let wire = key("10.0.1.2", 40000, "10.0.2.2", 80);
        let syn = pd("10.0.1.2", 40000, "10.0.2.2", 80, TH_SYN, 1000, 0);
        let mut st = StateData::default();
        crate::tcp_track::init_state(&mut st, &syn.tcp, None);
        start(&mut st, &syn, 1460, 7000);
        let ack = pd("10.0.1.2", 40000, "10.0.2.2", 80, TH_ACK, 1001, 7001);
        assert_eq!(step(&mut st, true, &ack, &wire, &wire, || 1, |_| true), ProxyStep::SrcLimit);
        assert_eq!(st.src.state, tcps::PROXY_SRC, "no SYN to the server");
    }

    #[test]
    fn the_mss_offered_is_the_syns_bounded_by_the_mtu() {
        // A 24-byte TCP header: the datagram is 44 bytes without payload.
        let syn20 = pd("10.0.1.2", 1, "10.0.2.2", 80, TH_SYN, 1, 0);
        let mut syn24 = Pd::ip(syn20.src4(), syn20.dst4(), PROTO_TCP, 0, 20, 44);
        (syn24.tcp, syn24.sport, syn24.dport) = (syn20.tcp, 1, 80);
        let mut pkt = vec![0u8; 20 + 24];
        pkt[20 + 12] = 6 << 4;
        pkt[40..44].copy_from_slice(&[2, 4, 0x05, 0xb4]);
        assert_eq!(syn24.tcp_hlen(), 24);
        assert_eq!(syn_mss(&pkt, &syn24, 1500), 1460);
        assert_eq!(syn_mss(&pkt, &syn24, 1400), 1360);
        let syn = pd("10.0.1.2", 1, "10.0.2.2", 80, TH_SYN, 1, 0);
        pkt[20 + 12] = 5 << 4;
        assert_eq!(syn_mss(&pkt, &syn, 1500), TCP_MSSDFLT, "no option: tcp_mssdflt");
    }
}
