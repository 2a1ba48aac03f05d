//! Whole frames, built valid and then mutated, through every parser: none
//! may panic, and every Repr that parses must emit → parse unchanged. The
//! walk reports the layers that parsed, so that parsers rejecting every
//! frame fail these tests instead of passing them.

mod common;

use std::net::Ipv4Addr;

use common::walk::reached;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use softnet_wire::arp::{ArpOperation, ArpRepr};
use softnet_wire::checksum;
use softnet_wire::ethernet::{EtherType, EthernetRepr, MacAddr, HEADER_LEN};
use softnet_wire::icmpv4::{DstUnreachable, Icmpv4Repr};
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::{TcpFlags, TcpRepr};
use softnet_wire::udp::UdpRepr;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

/// A valid frame of kind `kind` (0 ARP, 1 ICMP echo, 2 ICMP error, 3 UDP,
/// 4 TCP SYN with options), optionally VLAN-tagged, with `n` payload bytes.
fn build(kind: u8, vlan: bool, n: usize) -> Vec<u8> {
    let eth = |t| EthernetRepr {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr::BROADCAST,
        ethertype: t,
        vlan: vlan.then_some(7),
    };
    let payload: Vec<u8> = (0..n).map(|i| (i * 31) as u8).collect();
    if kind == 0 {
        let e = eth(EtherType::ARP);
        let mut f = vec![0u8; e.header_len() + ArpRepr::LEN];
        e.emit(&mut f);
        ArpRepr {
            operation: ArpOperation::Request,
            sender_hw: e.src,
            sender_ip: SRC,
            target_hw: MacAddr::ZERO,
            target_ip: DST,
        }
        .emit(&mut f[e.header_len()..]);
        return f;
    }
    let mut l4 = vec![0u8; 60 + n + 40];
    let (proto, len) = match kind {
        1 => {
            let r = Icmpv4Repr::EchoRequest { ident: 1, seq_no: 2, data: &payload };
            r.emit(&mut l4);
            (IpProtocol::ICMP, r.buffer_len())
        }
        2 => {
            // Unreachable quoting a UDP packet.
            let mut q = vec![0u8; 28];
            Ipv4Repr {
                src: DST,
                dst: SRC,
                protocol: IpProtocol::UDP,
                ttl: 1,
                tos: 0,
                ident: 9,
                dont_frag: false,
                payload_len: 8 + n,
            }
            .emit(&mut q);
            UdpRepr { src_port: 1, dst_port: 2, payload_len: n }.emit(&mut q[20..]);
            let r = Icmpv4Repr::DstUnreachable { code: DstUnreachable::FragRequired, next_hop_mtu: 1280, data: &q };
            r.emit(&mut l4);
            (IpProtocol::ICMP, r.buffer_len())
        }
        3 => {
            let r = UdpRepr { src_port: 5000, dst_port: 53, payload_len: n };
            r.emit_with_payload(&mut l4, SRC, DST, &payload);
            (IpProtocol::UDP, r.buffer_len())
        }
        _ => {
            let r = TcpRepr {
                src_port: 40000,
                dst_port: 22,
                seq: 1,
                ack: 0,
                flags: TcpFlags::SYN,
                window: 1024,
                max_seg_size: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                sack_ranges: [Some((1, 2)), None, None],
                timestamp: Some((5, 0)),
                payload_len: n,
            };
            r.emit_with_payload(&mut l4, SRC, DST, &payload);
            (IpProtocol::TCP, r.buffer_len())
        }
    };
    let e = eth(EtherType::IPV4);
    let ip =
        Ipv4Repr { src: SRC, dst: DST, protocol: proto, ttl: 64, tos: 0, ident: 1, dont_frag: true, payload_len: len };
    let mut f = vec![0u8; e.header_len() + ip.buffer_len()];
    e.emit(&mut f);
    ip.emit(&mut f[e.header_len()..]);
    f[e.header_len() + 20..].copy_from_slice(&l4[..len]);
    f
}

/// Recomputes the IPv4 header checksum if the mutated frame still has a
/// plausible untagged IPv4 header, so the layers beneath get exercised.
fn refresh_ip_checksum(f: &mut [u8]) {
    if f.len() > HEADER_LEN && f[12..14] == [8, 0] {
        if let Ok(mut p) = Ipv4Packet::new_checked(&mut f[HEADER_LEN..]) {
            p.fill_checksum();
        }
    }
}

/// The layers a valid frame of `kind` with `n` payload bytes has: a walk
/// of it reaches them all (the unreachable's quote is whole, a header that
/// parses, only without payload: it quotes 28 bytes).
fn layers(kind: u8, n: usize) -> u32 {
    reached::ETH
        | match kind {
            0 => reached::ARP,
            1 => reached::IPV4 | reached::ICMP,
            2 if n == 0 => reached::IPV4 | reached::ICMP | reached::QUOTED_IP,
            2 => reached::IPV4 | reached::ICMP,
            3 => reached::IPV4 | reached::UDP,
            _ => reached::IPV4 | reached::TCP,
        }
}

/// A case of the mutation tests: kind, VLAN tag, payload length, byte
/// edits (index, value), a cut, and whether the IP checksum is refixed.
type Case = (u8, bool, usize, Vec<(usize, u8)>, Option<usize>, bool);

fn case() -> impl Strategy<Value = Case> {
    (
        0u8..5,
        any::<bool>(),
        0usize..80,
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        proptest::option::of(any::<usize>()),
        any::<bool>(),
    )
}

/// The case's frame, valid, and mutated.
fn mutated((kind, vlan, n, edits, cut, fix): Case) -> (Vec<u8>, Vec<u8>) {
    let whole = build(kind, vlan, n);
    let mut f = whole.clone();
    for (at, v) in edits {
        let i = at % f.len();
        f[i] = v;
    }
    if let Some(c) = cut {
        f.truncate(c % (f.len() + 1));
    }
    if fix {
        refresh_ip_checksum(&mut f);
    }
    (whole, f)
}

#[test]
fn valid_frames_of_every_kind_walk_cleanly() {
    for kind in 0..5 {
        for vlan in [false, true] {
            for n in [0, 1, 7, 64] {
                let f = build(kind, vlan, n);
                assert_eq!(common::walk::frame_reached(&f), layers(kind, n), "kind {kind} vlan {vlan} n {n}");
            }
        }
    }
}

/// The mutations exercise both sides: from a fixed seed, at least one
/// mutated frame in 50 of every kind still parses down to its last layer
/// (an edit in a payload, a refixed IP checksum) and one in 10 is rejected
/// on the way.
#[test]
fn mutated_frames_are_parsed_as_well_as_rejected() {
    let config = Config { cases: 2000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let counts = std::cell::RefCell::new([[0usize; 2]; 5]);
    runner
        .run(&case(), |c| {
            let (kind, n) = (c.0, c.2);
            let (whole, f) = mutated(c);
            if f != whole {
                let all = common::walk::frame_reached(&f) & layers(kind, n) == layers(kind, n);
                counts.borrow_mut()[kind as usize][all as usize] += 1;
            }
            Ok(())
        })
        .unwrap();
    for (kind, [rejected, all]) in counts.into_inner().into_iter().enumerate() {
        let total = rejected + all;
        eprintln!("kind {kind}: {all} of {total} mutated frames parsed to the last layer");
        assert!(all * 50 >= total, "kind {kind}: only {all} of {total} mutated frames parsed to the last layer");
        assert!(rejected * 10 >= total, "kind {kind}: only {rejected} of {total} mutated frames rejected");
    }
}

#[test]
fn checksum_of_valid_ip_header_is_zero() {
    let f = build(3, false, 10);
    assert_eq!(checksum::checksum(&f[HEADER_LEN..HEADER_LEN + 20]), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// No mutation panics; a frame the mutations left as it was is
    /// parsed through every layer it has.
    #[test]
    fn mutated_frames_never_panic(c in case()) {
        let (kind, n) = (c.0, c.2);
        let (whole, f) = mutated(c);
        let got = common::walk::frame_reached(&f);
        if f == whole {
            prop_assert_eq!(got, layers(kind, n));
        }
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        common::walk::frame(&b);
    }
}
