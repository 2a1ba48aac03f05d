//! `synproxy state` through the filter's hooks (pf.c pf_synproxy): pf
//! answers the client's SYN itself, opens the connection to the server
//! only once the client completed the handshake, and splices the two
//! sequence spaces; a client that never answers never reaches the server.

use crate::common;

use common::{hook, net, tcp_bytes, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::Direction;
use softnet_core::packet::{mflags, PacketBuf};
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::tcp::{TcpFlags, TcpOption, TcpPacket};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const RULES: &str = "block all\npass out all\npass in on em0 proto tcp to port 80 synproxy state\n";

#[allow(clippy::too_many_arguments)]
fn seg(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, f: &str, seq: u32, ack: u32, len: usize) -> Vec<u8> {
    tcp_bytes(src, dst, sport, dport, TcpFlags::from_letters(f).unwrap(), seq, ack, len)
}

/// (src, dst, sport, dport, flags, seq, ack, mss, generated) of a segment.
#[allow(clippy::type_complexity)]
fn fields(p: &PacketBuf) -> (Ipv4Addr, Ipv4Addr, u16, u16, u8, u32, u32, Option<u16>, bool) {
    let d = p.data();
    let src = Ipv4Addr::new(d[12], d[13], d[14], d[15]);
    let dst = Ipv4Addr::new(d[16], d[17], d[18], d[19]);
    let t = TcpPacket::new_checked(&d[20..]).unwrap();
    assert!(t.verify_checksum(src, dst), "bad TCP checksum");
    let mss = t.option_iter().find_map(|o| match o {
        Ok(TcpOption::MaxSegmentSize(m)) => Some(m),
        _ => None,
    });
    let gen = p.meta.flags & mflags::PF_GENERATED != 0;
    (src, dst, t.src_port(), t.dst_port(), t.flags().bits(), t.seq_number(), t.ack_number(), mss, gen)
}

fn states(pf: &Pf) -> String {
    pf.show_states(0, Instant::from_secs(1))
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

#[test]
fn a_client_that_never_completes_the_handshake_never_reaches_the_server() {
    let n = net();
    let pf = common::pf_with(&n, RULES);
    let s = hook(&pf, Direction::In, &n.em0, 1, seg(A, B, 40000, 80, "S", 1000, 0, 0));
    assert!(s.consumed, "the SYN goes no further");
    assert_eq!(s.sent.len(), 1);
    let (src, dst, sport, dport, flags, _, ack, mss, gen) = fields(&s.sent[0]);
    assert_eq!((src, dst, sport, dport, flags, ack), (B, A, 80, 40000, SYN | ACK, 1001));
    assert_eq!(mss, Some(512), "the SYN had no MSS: tcp_mssdflt");
    assert!(gen, "pf out lets pf's own SYN|ACK by");
    assert_eq!(states(&pf), "all tcp 10.0.2.2:80 <- 10.0.1.2:40000       PROXY:SRC\n");
    // The same SYN again: the same answer; other segments are dropped.
    let again = hook(&pf, Direction::In, &n.em0, 2, seg(A, B, 40000, 80, "S", 1000, 0, 0));
    assert!(again.consumed);
    assert_eq!(fields(&again.sent[0]), fields(&s.sent[0]));
    let wrong = hook(&pf, Direction::In, &n.em0, 3, seg(A, B, 40000, 80, "A", 1001, 12345, 0));
    assert!(!wrong.consumed && wrong.passed.is_none() && wrong.sent.is_empty());
    assert_eq!(pf.counter("synproxy"), Some(3));
    // Nothing ever went toward the server, and there is no state of it on
    // the server's side: the proxied state expires as a first packet's.
    assert_eq!(pf.state_count(), 1);
    assert_eq!(pf.expire_states(Instant::from_secs(119)), 0);
    assert_eq!(pf.expire_states(Instant::from_secs(125)), 1);
}

#[test]
fn a_completed_handshake_opens_the_server_side_and_splices_the_sequence_numbers() {
    let n: Net = net();
    let pf = common::pf_with(&n, RULES);
    let mut syn = seg(A, B, 40000, 80, "S", 1000, 0, 0);
    // An MSS option (kind 2, 1460) in place of the first 4 payload-free
    // header bytes: rebuild the SYN with a 24-byte header.
    syn = with_mss(&syn, 1460);
    let s = hook(&pf, Direction::In, &n.em0, 1, syn);
    let (.., isn_c, _, mss, _) = fields(&s.sent[0]);
    assert_eq!(mss, Some(1460));
    // The client's ACK: pf sends the server a SYN as if from the client,
    // through pf out (not generated).
    let s = hook(&pf, Direction::In, &n.em0, 2, seg(A, B, 40000, 80, "A", 1001, isn_c.wrapping_add(1), 0));
    assert!(s.consumed);
    assert_eq!(s.sent.len(), 1);
    let (src, dst, sport, dport, flags, isn_s, _, mss, gen) = fields(&s.sent[0]);
    assert_eq!((src, dst, sport, dport, flags, mss, gen), (A, B, 40000, 80, SYN, Some(1460), false));
    assert_eq!(states(&pf), "all tcp 10.0.2.2:80 <- 10.0.1.2:40000       PROXY:DST\n");
    let out = hook(&pf, Direction::Out, &n.em1, 2, s.sent[0].data().to_vec());
    assert!(out.passed.is_some(), "pf's SYN passes pf out (`pass out`), making the server side's state");
    // The server answers; pf out toward the client takes the SYN|ACK and
    // sends an ACK each way.
    let sa = hook(&pf, Direction::In, &n.em1, 3, seg(B, A, 80, 40000, "SA", 3000, isn_s.wrapping_add(1), 0));
    let sa = sa.passed.expect("the server's SYN|ACK passes in (the outbound state)");
    let s = hook(&pf, Direction::Out, &n.em0, 3, sa.data().to_vec());
    assert!(s.consumed);
    assert_eq!(s.sent.len(), 2);
    let (src, dst, _, _, flags, seq, ack, _, gen) = fields(&s.sent[0]);
    assert_eq!((src, dst, flags, seq, ack, gen), (A, B, ACK, isn_s.wrapping_add(1), 3001, false));
    let (src, dst, _, _, flags, seq, ack, _, gen) = fields(&s.sent[1]);
    assert_eq!((src, dst, flags, seq, ack, gen), (B, A, ACK, isn_c.wrapping_add(1), 1001, true));
    assert!(hook(&pf, Direction::Out, &n.em1, 3, s.sent[0].data().to_vec()).passed.is_some());
    assert!(states(&pf).contains("10.0.2.2:80 <- 10.0.1.2:40000       ESTABLISHED:ESTABLISHED"), "{}", states(&pf));
    // Data from the client: its numbers shifted into the server's.
    let d = hook(&pf, Direction::In, &n.em0, 4, seg(A, B, 40000, 80, "PA", 1001, isn_c.wrapping_add(1), 5));
    let d = d.passed.expect("client data passes");
    let (.., seq, ack, _, _) = fields(&d);
    assert_eq!((seq, ack), (isn_s.wrapping_add(1), 3001));
    assert!(hook(&pf, Direction::Out, &n.em1, 4, d.data().to_vec()).passed.is_some());
    // The server's answer: its numbers shifted into the client's.
    let r = hook(&pf, Direction::In, &n.em1, 5, seg(B, A, 80, 40000, "PA", 3001, isn_s.wrapping_add(6), 3));
    let r = r.passed.expect("server data passes in");
    let r = hook(&pf, Direction::Out, &n.em0, 5, r.data().to_vec()).passed.expect("and out");
    let (.., seq, ack, _, _) = fields(&r);
    assert_eq!((seq, ack), (isn_c.wrapping_add(1), 1006));
}

/// `syn` with an MSS option: a 24-byte TCP header.
fn with_mss(syn: &[u8], mss: u16) -> Vec<u8> {
    let (src, dst) = (A, B);
    let t = softnet_wire::tcp::TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq: 1000,
        ack: 0,
        flags: TcpFlags::from_letters("S").unwrap(),
        window: 8192,
        max_seg_size: Some(mss),
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let i = common::ip_repr(src, dst, softnet_wire::ipv4::IpProtocol::TCP, t.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    t.emit_with_payload(&mut b[20..], src, dst, &[]);
    assert_ne!(b.len(), syn.len());
    b
}
