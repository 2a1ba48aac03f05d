//! `set reassemble no` through `PacketFilter::test`: fragments go to the
//! rules as they are (pf's PF_VPROTO_FRAGMENT): `fragment` rules match
//! them, rules with ports, TCP flags or ICMP types do not, no state is
//! made or looked up, nothing is translated, a fragment with DF is
//! refused and drops count as `fragment`.

use crate::common;
use common::{net, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv4::Ipv4Packet;
use softnet_wire::tcp::TcpFlags;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn pf(n: &Net, text: &str) -> Pf {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(7));
    common::pf_with(n, text)
}

/// A fragment of the datagram `whole` (20-byte header): `data` at byte
/// offset `off` of its payload.
fn fragment(whole: &[u8], off: usize, data: &[u8], more: bool, df: bool) -> PacketBuf {
    let mut b = whole[..20].to_vec();
    b.extend_from_slice(data);
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    p.set_total_len((20 + data.len()) as u16);
    p.set_flags_frag(df, more, off as u16);
    p.fill_checksum();
    PacketBuf::from_slice(&b)
}

/// The two fragments (0..64, 64..) of `whole`.
fn halves(whole: &[u8]) -> [PacketBuf; 2] {
    let payload = &whole[20..];
    [fragment(whole, 0, &payload[..64], true, false), fragment(whole, 64, &payload[64..], false, false)]
}

fn run(pf: &Pf, n: &Net, dir: Direction, p: PacketBuf) -> Verdict {
    let mut r = vec![];
    let ifp = if dir == Direction::In { &n.em0 } else { &n.em1 };
    pf.test(0, Instant::from_secs(1), dir, ifp, p, &mut Bufs, &mut r)
}

fn udp_whole() -> Vec<u8> {
    common::udp_bytes(A, B, 5000, 53, &[0x5a; 100])
}

#[test]
fn fragment_rules_match_fragments_and_port_rules_do_not() {
    let n = net();
    let pf = pf(&n, "set reassemble no\nblock all\npass in proto udp to port 53\npass out proto udp fragment\n");
    let whole = udp_whole();
    for f in halves(&whole) {
        let sent = f.data().to_vec();
        // In: the port rule cannot match a fragment (not even the first).
        assert!(matches!(run(&pf, &n, Direction::In, f), Verdict::Drop(_)));
        // Out: the fragment rule passes it, as it came, at once.
        let f = PacketBuf::from_slice(&sent);
        let Verdict::Pass(p) = run(&pf, &n, Direction::Out, f) else { panic!("fragment rule") };
        assert_eq!(p.data(), &sent[..]);
    }
    assert_eq!(pf.counter("fragment"), Some(2), "the two blocked fragments");
    assert_eq!(pf.state_count(), 0, "fragments make no state");
    // The whole datagram is no fragment: the port rule passes it, with a
    // state, and the fragment rule does not match it out.
    assert!(matches!(run(&pf, &n, Direction::In, PacketBuf::from_slice(&whole)), Verdict::Pass(_)));
    assert_eq!(pf.state_count(), 1);
    assert!(matches!(run(&pf, &n, Direction::Out, PacketBuf::from_slice(&whole)), Verdict::Drop(_)));
}

#[test]
fn fragments_skip_states_flags_and_translation() {
    let n = net();
    // The state for the whole datagram does not pass fragments of the
    // same flow; `pass` (flags S/SA) does not match TCP fragments,
    // `flags any` does; `nat-to` leaves fragments alone.
    let pf = pf(
        &n,
        "set reassemble no\nblock all\npass in proto udp\npass in proto tcp\nmatch out nat-to 10.0.2.1\npass out proto tcp flags any\n",
    );
    let whole = udp_whole();
    assert!(matches!(run(&pf, &n, Direction::In, PacketBuf::from_slice(&whole)), Verdict::Pass(_)));
    for f in halves(&whole) {
        // `pass in proto udp` (no ports) matches the fragments themselves.
        assert!(matches!(run(&pf, &n, Direction::In, f), Verdict::Pass(_)));
    }
    assert_eq!(pf.state_count(), 1);
    let tcp = common::tcp_bytes(A, B, 40000, 22, TcpFlags::SYN, 1, 0, 100);
    for f in halves(&tcp) {
        let sent = f.data().to_vec();
        assert!(matches!(run(&pf, &n, Direction::In, f), Verdict::Drop(_)), "flags S/SA");
        let Verdict::Pass(p) = run(&pf, &n, Direction::Out, PacketBuf::from_slice(&sent)) else { panic!("flags any") };
        assert_eq!(p.data(), &sent[..], "not translated");
    }
    assert_eq!(pf.state_count(), 1);
}

#[test]
fn a_fragment_with_df_is_refused_unless_no_df() {
    let n = net();
    let whole = udp_whole();
    let payload = &whole[20..];
    let pf1 = pf(&n, "set reassemble no\npass all\n");
    let f = fragment(&whole, 0, &payload[..64], true, true);
    assert!(matches!(run(&pf1, &n, Direction::In, f), Verdict::Drop(_)));
    assert_eq!(pf1.counter("fragment"), Some(1));
    let pf2 = pf(&n, "set reassemble no no-df\npass all\n");
    let f = fragment(&whole, 0, &payload[..64], true, true);
    let Verdict::Pass(p) = run(&pf2, &n, Direction::In, f) else { panic!("no-df clears DF") };
    let ip = Ipv4Packet::new_checked(p.data()).unwrap();
    assert!(!ip.dont_frag() && ip.more_frags());
    assert!(ip.verify_checksum());
    assert_eq!(pf2.counter("fragment"), Some(0));
}

#[test]
fn block_return_sends_nothing_for_a_fragment() {
    let n = net();
    let pf = pf(&n, "set reassemble no\nblock return all\n");
    let tcp = common::tcp_bytes(A, B, 40000, 22, TcpFlags::SYN, 1, 0, 100);
    let [first, _] = halves(&tcp);
    let mut r = vec![];
    let v = pf.test(0, Instant::from_secs(1), Direction::In, &n.em0, first, &mut Bufs, &mut r);
    assert!(matches!(v, Verdict::Drop(_)));
    assert!(r.is_empty(), "{} replies", r.len());
}

#[test]
fn set_reassemble_no_loads() {
    let n = net();
    assert!(softnet_pf::parse::load_ruleset("set reassemble no\npass in fragment\n", "pf.conf", &n.resolver).is_ok());
}
