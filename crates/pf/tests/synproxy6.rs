//! `synproxy state` on `inet6` rules: pf answers an IPv6 client's SYN
//! itself (its SYN|ACK over IPv6, the MSS bounded for IPv6's 60 bytes of
//! headers), opens the connection to the server once the client
//! answered, and splices the two sequence spaces.

use crate::common;

use common::{hook, net};

use std::net::Ipv6Addr;

use softnet_core::filter::Direction;
use softnet_core::packet::{mflags, PacketBuf};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use softnet_wire::tcp::{TcpFlags, TcpOption, TcpPacket, TcpRepr};

const A: &str = "2001:db8:1::2";
const B: &str = "2001:db8:2::2";
const RULES: &str = "block all\npass out all\npass in on em0 inet6 proto tcp to port 80 synproxy state\n";
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn seg(src: &str, dst: &str, sport: u16, dport: u16, f: &str, seq: u32, ack: u32, mss: Option<u16>) -> Vec<u8> {
    let (s, d) = (a6(src), a6(dst));
    let t = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags: TcpFlags::from_letters(f).unwrap(),
        window: 8192,
        max_seg_size: mss,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let r = Ipv6Repr {
        src: s,
        dst: d,
        next_header: IpProtocol::TCP,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: t.buffer_len(),
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    t.emit_with_payload_v6(&mut b[40..], s, d, &[]);
    b
}

/// (src, dst, sport, dport, flags, seq, ack, mss, generated), the TCP
/// checksum checked over IPv6's pseudo-header.
#[allow(clippy::type_complexity)]
fn fields(p: &PacketBuf) -> (Ipv6Addr, Ipv6Addr, u16, u16, u8, u32, u32, Option<u16>, bool) {
    let ip = Ipv6Packet::new_checked(p.data()).unwrap();
    assert_eq!(ip.hop_limit(), 64);
    let (src, dst) = (ip.src(), ip.dst());
    let t = TcpPacket::new_checked(&p.data()[40..]).unwrap();
    assert!(t.verify_checksum_v6(src, dst), "bad TCP checksum");
    let mss = t.option_iter().find_map(|o| match o {
        Ok(TcpOption::MaxSegmentSize(m)) => Some(m),
        _ => None,
    });
    let gen = p.meta.flags & mflags::PF_GENERATED != 0;
    (src, dst, t.src_port(), t.dst_port(), t.flags().bits(), t.seq_number(), t.ack_number(), mss, gen)
}

#[test]
fn an_ipv6_handshake_is_proxied_and_spliced() {
    let n = net();
    let pf = common::pf_with(&n, RULES);
    // an MSS above what a 1500-byte link takes over IPv6: 1440
    let s = hook(&pf, Direction::In, &n.em0, 1, seg(A, B, 40000, 80, "S", 1000, 0, Some(1460)));
    assert!(s.consumed, "the SYN goes no further");
    let (src, dst, sport, dport, flags, isn_c, ack, mss, gen) = fields(&s.sent[0]);
    assert_eq!(
        (src, dst, sport, dport, flags, ack, mss, gen),
        (a6(B), a6(A), 80, 40000, SYN | ACK, 1001, Some(1440), true)
    );
    // a client that does not answer right reaches nothing
    let bad = hook(&pf, Direction::In, &n.em0, 1, seg(A, B, 40000, 80, "A", 1001, isn_c.wrapping_add(9), None));
    assert!(bad.sent.is_empty() && bad.passed.is_none());
    assert_eq!(pf.counter("synproxy"), Some(2), "the SYN consumed, the bad ACK dropped");
    // the client's ACK: a SYN to the server as if from the client
    let s = hook(&pf, Direction::In, &n.em0, 2, seg(A, B, 40000, 80, "A", 1001, isn_c.wrapping_add(1), None));
    let (src, dst, sport, dport, flags, isn_s, _, mss, gen) = fields(&s.sent[0]);
    assert_eq!((src, dst, sport, dport, flags, mss, gen), (a6(A), a6(B), 40000, 80, SYN, Some(1440), false));
    assert!(hook(&pf, Direction::Out, &n.em1, 2, s.sent[0].data().to_vec()).passed.is_some());
    // the server's SYN|ACK: an ACK each way
    let sa = hook(&pf, Direction::In, &n.em1, 3, seg(B, A, 80, 40000, "SA", 3000, isn_s.wrapping_add(1), None));
    let s = hook(&pf, Direction::Out, &n.em0, 3, sa.passed.unwrap().data().to_vec());
    assert!(s.consumed);
    let (src, dst, _, _, flags, seq, ack, _, gen) = fields(&s.sent[0]);
    assert_eq!((src, dst, flags, seq, ack, gen), (a6(A), a6(B), ACK, isn_s.wrapping_add(1), 3001, false));
    let (src, dst, _, _, flags, seq, ack, _, gen) = fields(&s.sent[1]);
    assert_eq!((src, dst, flags, seq, ack, gen), (a6(B), a6(A), ACK, isn_c.wrapping_add(1), 1001, true));
    // data from the client: its numbers shifted into the server's
    let d = hook(&pf, Direction::In, &n.em0, 4, seg(A, B, 40000, 80, "PA", 1001, isn_c.wrapping_add(1), None));
    let (.., seq, ack, _, _) = fields(&d.passed.expect("client data passes"));
    assert_eq!((seq, ack), (isn_s.wrapping_add(1), 3001));
}

#[test]
fn inet6_synproxy_rules_load() {
    let n = net();
    assert!(softnet_pf::load_ruleset(RULES, "pf.conf", &n.resolver).is_ok());
}
