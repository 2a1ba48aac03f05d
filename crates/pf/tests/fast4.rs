//! The batch hook's IPv4 fast path (`eval::fast4`: the key words read
//! off the headers, the state's `fast` bits, `nat-to`'s rewrite from the
//! state's keys) against the per-packet hook, which decides every packet
//! the general way: the same verdicts, the same bytes out (translated
//! both ways), the same links and tags, the same state counters, for
//! forwarded packets and their replies under churn.

use crate::common;
use common::{net, pf_with, tcp_bytes, udp_bytes, HeapBufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Decision, Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::rng;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::tcp::TcpFlags;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// Plain states, `nat-to` states, states off the fast path (a tag, a
/// log), blocked packets and TCP, chosen by the client's port.
const RULES: &str = "\
match out on em1 proto udp from 10.0.1.0/24 port 5000:5007 nat-to 10.0.2.1
pass all
pass in on em0 proto udp from any port 5008:5011 tag T1
pass in log on em0 proto udp from any port 5012:5013
block in on em0 proto udp to port 55
";

/// A small xorshift generator (deterministic runs).
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// One batch through `test_batch` on `batched` and packet by packet
/// through `test` on `single`: both must decide, rewrite and mark every
/// packet alike. Returns the packets that passed.
pub(crate) fn both(
    (batched, single): (&Pf, &Pf),
    now: Instant,
    dir: Direction,
    ifp: &Interface,
    batch: Vec<PacketBuf>,
    what: &str,
) -> Vec<PacketBuf> {
    let copies: Vec<PacketBuf> = batch
        .iter()
        .map(|p| {
            let mut c = PacketBuf::from_slice(p.data());
            c.meta = p.meta;
            c
        })
        .collect();
    let mut slots: Vec<Option<PacketBuf>> = batch.into_iter().map(Some).collect();
    let mut decisions = vec![Decision::Consumed; slots.len()];
    // The same random draws (NAT ports) on both sides, in the same order.
    let seed = now.as_nanos() ^ slots.len() as u64;
    rng::install(rng::WorkerRng::seeded(seed));
    batched.test_batch(0, now, dir, ifp, &mut slots, &mut decisions, &mut HeapBufs, &mut vec![]);
    let mut passed = vec![];
    rng::install(rng::WorkerRng::seeded(seed));
    for ((slot, d), p) in slots.into_iter().zip(decisions).zip(copies) {
        let one = single.test(0, now, dir, ifp, p, &mut HeapBufs, &mut vec![]);
        match (d, one) {
            (Decision::Pass, Verdict::Pass(b)) => {
                let a = slot.expect("a passed packet stays in its slot");
                assert_eq!(a.data(), b.data(), "{what}: the same bytes");
                assert_eq!(a.meta.pf_link, b.meta.pf_link, "{what}: the same states found");
                assert_eq!(a.meta.pf_tag, b.meta.pf_tag, "{what}: the same tag");
                passed.push(a);
            }
            (Decision::Drop, Verdict::Drop(_)) | (Decision::Consumed, Verdict::Consumed) => {}
            (d, v) => {
                panic!("{what}: batch {d:?}, one by one {}", if let Verdict::Pass(_) = v { "pass" } else { "not" })
            }
        }
    }
    passed
}

/// The answer to a packet as it left: addresses and ports swapped.
fn reply(p: &PacketBuf) -> PacketBuf {
    let d = p.data();
    let (src, dst) = (Ipv4Addr::new(d[12], d[13], d[14], d[15]), Ipv4Addr::new(d[16], d[17], d[18], d[19]));
    let (sport, dport) = (u16::from_be_bytes([d[20], d[21]]), u16::from_be_bytes([d[22], d[23]]));
    PacketBuf::from_slice(&udp_bytes(dst, src, dport, sport, &[0x5a; 12]))
}

pub(crate) fn state_lines(pf: &Pf, now: Instant) -> String {
    let s = pf.show_states(1, now);
    s.lines().filter(|l| !l.contains("id:")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_fast_path_decides_translates_and_counts_as_the_general_path() {
    let n: Net = net();
    let (batched, single) = (pf_with(&n, RULES), pf_with(&n, RULES));
    let pfs = (&batched, &single);
    let mut rng = Rng(0x9e37_79b9);
    let mut t = 10u64;
    for round in 0..300 {
        // Time moves on by 0-2 s a round: activity times move or not.
        t += (rng.next() % 3) as u64;
        let now = Instant::from_secs(t);
        let len = (rng.next() % 70) as usize;
        let mut batch = Vec::new();
        for _ in 0..len {
            let r = rng.next();
            let sport = 5000 + (r % 16) as u16;
            let dport = [53, 54, 55][(r >> 4) as usize % 3];
            let mut p = match (r >> 8) % 16 {
                // TCP: a SYN or a stray ACK (its own path, not the fast one).
                0 => PacketBuf::from_slice(&tcp_bytes(CLIENT, SERVER, sport, 80, TcpFlags::SYN, 1000, 0, 0)),
                1 => PacketBuf::from_slice(&tcp_bytes(CLIENT, SERVER, sport, 80, TcpFlags::ACK, r, 1, 4)),
                _ => PacketBuf::from_slice(&udp_bytes(CLIENT, SERVER, sport, dport, &[0u8; 18])),
            };
            match (r >> 12) % 24 {
                // A truncated packet, or one with a byte changed.
                0 => p = PacketBuf::from_slice(&p.data()[..(r >> 20) as usize % p.len()]),
                1 => {
                    let at = (r >> 20) as usize % p.len();
                    p.data_mut()[at] ^= (r >> 8) as u8 | 1;
                }
                _ => {}
            }
            batch.push(p);
        }
        let passed = both(pfs, now, Direction::In, &n.em0, batch, &format!("round {round}, in on em0"));
        let out = both(pfs, now, Direction::Out, &n.em1, passed, &format!("round {round}, out on em1"));
        // The answers to what left (UDP only), most of them: translated back.
        let answers: Vec<PacketBuf> =
            out.iter().filter(|p| p.data()[9] == 17 && !rng.next().is_multiple_of(4)).map(reply).collect();
        let back = both(pfs, now, Direction::In, &n.em1, answers, &format!("round {round}, in on em1"));
        both(pfs, now, Direction::Out, &n.em0, back, &format!("round {round}, out on em0"));
        match rng.next() % 60 {
            0 => assert_eq!(batched.flush_states(), single.flush_states()),
            1 => {
                for pf in [&batched, &single] {
                    pf.load(&softnet_pf::parse_ruleset(RULES, "pf.conf", &n.resolver).unwrap(), &n.resolver).unwrap();
                }
            }
            _ => {}
        }
        assert_eq!(state_lines(&batched, now), state_lines(&single, now), "round {round}");
    }
    // Every kind of state was made and used.
    let s = state_lines(&batched, Instant::from_secs(t));
    assert!(s.contains("10.0.2.1:"), "nat-to states: {s}");
    assert!(s.contains("MULTIPLE:MULTIPLE"), "answered flows: {s}");
}

/// Enough flows that some keys are not the first of their index bucket
/// (the batch's hint names the bucket's first state only: the fast path
/// then searches, `StateTable::probe_fast4`), half of them
/// translated: every round through the batch hook and packet by packet
/// ends in the same states, the same rule counters and the same
/// searches, with the fast path's counts added once a chunk
/// (`eval::fast4::Owed`).
#[test]
fn many_flows_decide_and_count_as_the_general_path() {
    const FLOWS: u16 = 4096;
    let rules = "match out on em1 proto udp from 10.0.1.0/24 port 20000:21999 nat-to 10.0.2.1\npass all\n";
    let n: Net = net();
    let (batched, single) = (pf_with(&n, rules), pf_with(&n, rules));
    let pfs = (&batched, &single);
    let now = Instant::from_secs(10);
    let frames: Vec<Vec<u8>> =
        (0..FLOWS).map(|j| udp_bytes(CLIENT, SERVER, 20000 + j, 53 + j % 3, &[0u8; 18])).collect();
    rounds_both_ways(&n, pfs, now, &frames, reply, true);
    assert_eq!(batched.state_count(), 2 * FLOWS as usize);
    let s = state_lines(&batched, now);
    assert!(s.contains("10.0.2.1:") && s.contains("MULTIPLE:MULTIPLE"), "{s}");
}

/// Four rounds of `frames` in 64-packet batches through pf in on em0 and
/// pf out on em1, and from the second round on their answers (`reply`)
/// back in on em1 and out on em0, every batch through both of `pfs`
/// (`both`); after each round the two have the same states, rule
/// counters and searches. `all_pass`: every packet passes pf in.
pub(crate) fn rounds_both_ways(
    n: &Net,
    pfs: (&Pf, &Pf),
    now: Instant,
    frames: &[Vec<u8>],
    reply: fn(&PacketBuf) -> PacketBuf,
    all_pass: bool,
) {
    let (batched, single) = pfs;
    for round in 0..4 {
        let mut answers = vec![];
        for (c, chunk) in frames.chunks(64).enumerate() {
            let batch = chunk.iter().map(|f| PacketBuf::from_slice(f)).collect();
            let what = format!("round {round}, chunk {c}");
            let passed = both(pfs, now, Direction::In, &n.em0, batch, &format!("{what}, in on em0"));
            if all_pass {
                assert_eq!(passed.len(), chunk.len(), "{what}");
            }
            let out = both(pfs, now, Direction::Out, &n.em1, passed, &format!("{what}, out on em1"));
            // From the second round on, the answers.
            if round > 0 {
                answers.extend(out.iter().map(reply));
            }
        }
        for (c, chunk) in answers.chunks(64).enumerate() {
            let what = format!("round {round}, answers {c}");
            let batch = chunk.iter().map(|p| PacketBuf::from_slice(p.data())).collect();
            let back = both(pfs, now, Direction::In, &n.em1, batch, &format!("{what}, in on em1"));
            both(pfs, now, Direction::Out, &n.em0, back, &format!("{what}, out on em0"));
        }
        assert_eq!(state_lines(batched, now), state_lines(single, now), "round {round}");
        assert_eq!(batched.show_rules(1), single.show_rules(1), "round {round}: rule counters");
        assert_eq!(batched.show_info(0, now), single.show_info(0, now), "round {round}: searches");
    }
}
