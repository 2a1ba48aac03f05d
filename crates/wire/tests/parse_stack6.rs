//! IPv6 frames of every kind, built valid and then mutated, through every
//! parser: none may panic, and every Repr that parses must emit → parse
//! unchanged (the walk in common/walk6.rs, shared with the fuzz targets).
//! The walk reports the layers that parsed, so that parsers rejecting
//! every packet fail these tests instead of passing them.

mod common;

use std::net::Ipv6Addr;

use common::walk::reached;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use softnet_wire::ethernet::{EtherType, EthernetRepr, MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::{DstUnreachable, Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{self, Ipv6AddrExt, Ipv6Repr};
use softnet_wire::ipv6ext::{self, FragmentRepr};
use softnet_wire::mld::{self, record_type, MldRecordRepr, MldRepr};
use softnet_wire::ndp::{self, NaFlags, NdpOption, NdpRepr, PrefixInfo, RouterPreference};
use softnet_wire::tcp::{TcpFlags, TcpRepr};
use softnet_wire::udp::UdpRepr;

const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const KINDS: u8 = 9;

fn src() -> Ipv6Addr {
    ipv6::link_local_from_mac(MAC)
}
fn dst() -> Ipv6Addr {
    "fd00:1::2".parse().unwrap()
}

/// The IPv6 packet (no Ethernet) of kind `kind`: 0 echo, 1 NS, 2 NA, 3 RA
/// with options, 4 MLDv2 report behind a router alert, 5 UDP behind a
/// destination options header, 6 TCP first fragment, 7 later fragment,
/// 8 unreachable quoting a UDP packet; `n` payload bytes where it applies.
fn build(kind: u8, n: usize) -> Vec<u8> {
    let (s, d) = (src(), dst());
    let payload: Vec<u8> = (0..n).map(|i| (i * 29) as u8).collect();
    let mut ext: Vec<u8> = Vec::new();
    let mut l4 = vec![0u8; 200 + n];
    let mut dst_addr = d;
    let (proto, len) = match kind {
        0..=4 | 8 => {
            let mut opts = [0u8; 64];
            let mut recs = [0u8; 64];
            let mut quote = vec![0u8; 48 + n];
            let r = match kind {
                0 => Icmpv6Repr::EchoRequest { ident: 7, seq_no: 1, data: &payload },
                1 => {
                    let k = ndp::emit_options(&[NdpOption::SourceLinkAddr(MAC)], &mut opts);
                    dst_addr = d.solicited_node();
                    Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit { target: d, options: &opts[..k] })
                }
                2 => {
                    let k = ndp::emit_options(&[NdpOption::TargetLinkAddr(MAC)], &mut opts);
                    let flags = NaFlags { router: true, solicited: true, override_: false };
                    Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert { flags, target: s, options: &opts[..k] })
                }
                3 => {
                    let pi = PrefixInfo {
                        prefix_len: 64,
                        on_link: true,
                        autonomous: true,
                        valid_lifetime: 86400,
                        preferred_lifetime: 14400,
                        prefix: "fd00:1::".parse().unwrap(),
                    };
                    let k = ndp::emit_options(
                        &[NdpOption::SourceLinkAddr(MAC), NdpOption::Mtu(1500), NdpOption::PrefixInfo(pi)],
                        &mut opts,
                    );
                    dst_addr = ipv6::ALL_NODES;
                    Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
                        hop_limit: 64,
                        managed: false,
                        other: false,
                        preference: RouterPreference::Medium,
                        router_lifetime: 1800,
                        reachable_time: 0,
                        retrans_timer: 0,
                        options: &opts[..k],
                    })
                }
                4 => {
                    let groups = [d.solicited_node(), ipv6::ALL_ROUTERS];
                    let rs = groups.map(|group| MldRecordRepr {
                        record_type: record_type::CHANGE_TO_EXCLUDE,
                        group,
                        sources: &[],
                    });
                    let k = mld::emit_records(&rs, &mut recs);
                    ext.extend_from_slice(&ipv6ext::router_alert_hop_by_hop(IpProtocol::ICMPV6));
                    dst_addr = ipv6::ALL_MLDV2_ROUTERS;
                    Icmpv6Repr::Mld(MldRepr::ReportV2 { count: 2, records: &recs[..k] })
                }
                _ => {
                    let q = Ipv6Repr {
                        src: d,
                        dst: s,
                        next_header: IpProtocol::UDP,
                        hop_limit: 1,
                        traffic_class: 0,
                        flow_label: 0,
                        payload_len: 8 + n,
                    };
                    q.emit(&mut quote);
                    UdpRepr { src_port: 1, dst_port: 2, payload_len: n }.emit_with_payload_v6(
                        &mut quote[40..],
                        d,
                        s,
                        &payload,
                    );
                    Icmpv6Repr::DstUnreachable { code: DstUnreachable::PortUnreachable, data: &quote }
                }
            };
            r.emit(s, dst_addr, &mut l4);
            (IpProtocol::ICMPV6, r.buffer_len())
        }
        5 => {
            ext.extend_from_slice(&[IpProtocol::UDP.0, 0, 0x1e, 2, 0xaa, 0xbb, 1, 0]);
            let r = UdpRepr { src_port: 5000, dst_port: 53, payload_len: n };
            r.emit_with_payload_v6(&mut l4, s, d, &payload);
            (IpProtocol::UDP, r.buffer_len())
        }
        6 | 7 => {
            let mut f = [0u8; 8];
            let off = if kind == 6 { 0 } else { 1280 };
            FragmentRepr { next_header: IpProtocol::TCP, frag_offset: off, more_frags: kind == 6, ident: 99 }
                .emit(&mut f);
            ext.extend_from_slice(&f);
            let r = TcpRepr {
                src_port: 40000,
                dst_port: 22,
                seq: 1,
                ack: 0,
                flags: TcpFlags::SYN,
                window: 1024,
                max_seg_size: Some(1440),
                window_scale: Some(7),
                sack_permitted: true,
                sack_ranges: [None; 3],
                timestamp: Some((5, 0)),
                // 40-byte header: a first fragment holds a multiple of 8.
                payload_len: n / 8 * 8,
            };
            let p: Vec<u8> = (0..r.payload_len).map(|i| i as u8).collect();
            r.emit_with_payload_v6(&mut l4, s, d, &p);
            (IpProtocol::TCP, r.buffer_len())
        }
        _ => unreachable!(),
    };
    // Chain the extension headers in front of the upper layer.
    let first = if ext.is_empty() {
        proto
    } else if kind == 4 {
        IpProtocol::HOPOPT
    } else if kind == 5 {
        IpProtocol::IPV6_OPTS
    } else {
        IpProtocol::IPV6_FRAG
    };
    let ip = Ipv6Repr {
        src: s,
        dst: dst_addr,
        next_header: first,
        hop_limit: if kind <= 3 {
            255
        } else if kind == 4 {
            1
        } else {
            64
        },
        traffic_class: 0,
        flow_label: 0x12345,
        payload_len: ext.len() + len,
    };
    let mut b = vec![0u8; ip.buffer_len()];
    ip.emit(&mut b);
    b[40..40 + ext.len()].copy_from_slice(&ext);
    b[40 + ext.len()..].copy_from_slice(&l4[..len]);
    b
}

fn frame(kind: u8, n: usize) -> Vec<u8> {
    let e = EthernetRepr { src: MAC, dst: MacAddr([0x33, 0x33, 0, 0, 0, 1]), ethertype: EtherType::IPV6, vlan: None };
    let p = build(kind, n);
    let mut f = vec![0u8; HEADER_LEN + p.len()];
    e.emit(&mut f);
    f[HEADER_LEN..].copy_from_slice(&p);
    f
}

/// Refixes the ICMPv6 checksum when a mutated packet still reaches one, so
/// the NDP / MLD parsers run on mutated bodies.
fn refresh_icmp_checksum(p: &mut [u8]) {
    let Ok(v) = ipv6::Ipv6Packet::new_checked(&*p) else { return };
    let (s, d) = (v.src(), v.dst());
    let Ok(c) = v.ext_headers().walk() else { return };
    let end = v.total_len();
    if c.upper == IpProtocol::ICMPV6 && !c.is_later_fragment() && end - c.upper_offset >= 8 {
        Icmpv6Packet::new_unchecked(&mut p[c.upper_offset..end]).fill_checksum(s, d);
    }
}

/// The layers a valid packet of `kind` has: a walk of it reaches them all
/// (a later fragment ends at its fragment header).
fn layers(kind: u8) -> u32 {
    reached::IPV6
        | reached::EXT
        | match kind {
            0 => reached::ICMP6,
            1..=3 => reached::ICMP6 | reached::NDP,
            4 => reached::ICMP6 | reached::MLD,
            5 => reached::UDP,
            6 => reached::TCP,
            7 => 0,
            _ => reached::ICMP6 | reached::QUOTED_IP,
        }
}

/// A case of the mutation tests: kind, payload length, byte edits (index,
/// value), a cut, and whether the ICMPv6 checksum is refixed.
type Case = (u8, usize, Vec<(usize, u8)>, Option<usize>, bool);

fn case() -> impl Strategy<Value = Case> {
    (
        0u8..KINDS,
        0usize..80,
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        proptest::option::of(any::<usize>()),
        any::<bool>(),
    )
}

/// The case's packet, valid, and mutated.
fn mutated((kind, n, edits, cut, fix): Case) -> (Vec<u8>, Vec<u8>) {
    let whole = build(kind, n);
    let mut p = whole.clone();
    for (at, v) in edits {
        let i = at % p.len();
        p[i] = v;
    }
    if let Some(c) = cut {
        p.truncate(c % (p.len() + 1));
    }
    if fix {
        refresh_icmp_checksum(&mut p);
    }
    (whole, p)
}

/// The mutations exercise both sides: from a fixed seed, at least one
/// mutated packet in 50 of every kind still parses down to its last layer
/// (an edit in a payload, a refixed checksum) and one in 10 is rejected on
/// the way.
#[test]
fn mutated_packets_are_parsed_as_well_as_rejected() {
    let config = Config { cases: 3000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let counts = std::cell::RefCell::new([[0usize; 2]; KINDS as usize]);
    runner
        .run(&case(), |c| {
            let kind = c.0;
            let (whole, p) = mutated(c);
            if p != whole {
                let all = common::walk::walk6::ip6(&p) & layers(kind) == layers(kind);
                counts.borrow_mut()[kind as usize][all as usize] += 1;
            }
            Ok(())
        })
        .unwrap();
    for (kind, [rejected, all]) in counts.into_inner().into_iter().enumerate() {
        let total = rejected + all;
        eprintln!("kind {kind}: {all} of {total} mutated packets parsed to the last layer");
        assert!(all * 50 >= total, "kind {kind}: only {all} of {total} mutated packets parsed to the last layer");
        assert!(rejected * 10 >= total, "kind {kind}: only {rejected} of {total} mutated packets rejected");
    }
}

#[test]
fn valid_packets_of_every_kind_walk_cleanly() {
    for kind in 0..KINDS {
        for n in [0, 1, 7, 64] {
            let p = build(kind, n);
            let v = ipv6::Ipv6Packet::new_checked(&p[..]).unwrap();
            let c = v.ext_headers().walk().unwrap();
            if c.upper == IpProtocol::ICMPV6 {
                let m = Icmpv6Packet::new_checked(&p[c.upper_offset..]).unwrap();
                let r = Icmpv6Repr::parse(v.src(), v.dst(), &m).unwrap();
                if let Icmpv6Repr::Ndp(n) = r {
                    assert_eq!(n.validate(v.src(), v.dst(), v.hop_limit()), Ok(()), "kind {kind}");
                }
            }
            assert_eq!(common::walk::walk6::ip6(&p), layers(kind), "kind {kind} n {n}");
            assert_eq!(common::walk::frame_reached(&frame(kind, n)), reached::ETH | layers(kind), "kind {kind} n {n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// No mutation panics; a packet the mutations left as it was is
    /// parsed through every layer it has.
    #[test]
    fn mutated_packets_never_panic(c in case()) {
        let kind = c.0;
        let (whole, p) = mutated(c);
        let got = common::walk::walk6::ip6(&p);
        common::walk::walk6::ip6_and_chain(&p[p.len().min(40)..]);
        if p == whole {
            prop_assert_eq!(got, layers(kind));
        }
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        common::walk::walk6::ip6_and_chain(&b);
        common::walk::walk6::icmp6_fixed(&b);
        common::walk::walk6::ndp_fixed(&b);
    }
}
