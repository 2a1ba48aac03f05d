//! What the pf integration tests share: two interfaces in an interface
//! table (em0 10.0.1.1/24, em1 10.0.2.1/24, egress em1), a resolver that
//! knows them, and a Pf loaded from pf.conf text.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use softnet_core::filter::{BufferSource, Direction, PacketFilter, Verdict};
use softnet_core::iface::{IfAddr, Interface, InterfaceConfig, InterfaceTable};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_core::vlink;
use softnet_pf::pflog::PflogQueue;
use softnet_pf::{parse_ruleset, Pf, StaticResolver};
use softnet_wire::icmpv6::Icmpv6Repr;
use softnet_wire::ipv4::{IpProtocol, Ipv4Repr};
use softnet_wire::ipv6::Ipv6Repr;
use softnet_wire::tcp::{TcpFlags, TcpRepr};
use softnet_wire::udp::UdpRepr;

pub struct Net {
    _table: InterfaceTable,
    pub em0: Arc<Interface>,
    pub em1: Arc<Interface>,
    pub resolver: StaticResolver,
}

pub fn net() -> Net {
    let table = InterfaceTable::new();
    let mk = |name: &str, addr: Ipv4Addr| {
        let (a, _b) = vlink::wire(1, 16);
        let i = table
            .create(InterfaceConfig { name: name.into(), mac: Default::default(), mtu: 1500, queues: a.link_queues() })
            .unwrap();
        i.set_addrs(vec![IfAddr::new(addr, 24)]);
        i.set_up(true);
        i
    };
    let em0 = mk("em0", Ipv4Addr::new(10, 0, 1, 1));
    let em1 = mk("em1", Ipv4Addr::new(10, 0, 2, 1));
    let resolver = StaticResolver::new()
        .with_interface("em0", &["10.0.1.1/24"])
        .with_interface("em1", &["10.0.2.1/24"])
        .with_egress("em1");
    Net { _table: table, em0, em1, resolver }
}

/// A Pf with `text` loaded (panics with the parse errors).
pub fn pf_with(n: &Net, text: &str) -> Pf {
    let rs = parse_ruleset(text, "pf.conf", &n.resolver).unwrap_or_else(|e| panic!("{e:?}"));
    let pf = Pf::new();
    pf.load(&rs, &n.resolver).unwrap();
    pf
}

/// A buffer source that never has a buffer (the per-packet path of an
/// established state needs none; a test that watches allocations uses it).
pub struct NoBufs;
impl BufferSource for NoBufs {
    fn alloc(&mut self) -> Option<PacketBuf> {
        None
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        None
    }
    fn free(&mut self, _p: PacketBuf) {}
}

/// A buffer source that allocates each buffer (replies, reassembly).
pub struct HeapBufs;
impl BufferSource for HeapBufs {
    fn alloc(&mut self) -> Option<PacketBuf> {
        Some(PacketBuf::with_capacity(2048))
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        Some(PacketBuf::with_capacity(65535 + 256))
    }
    fn free(&mut self, _p: PacketBuf) {}
}

/// The IPv4 header the tests' packets carry (TTL 64, id 7, no options).
pub fn ip_repr(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> Ipv4Repr {
    Ipv4Repr { src, dst, protocol, ttl: 64, tos: 0, ident: 7, dont_frag: false, payload_len }
}

/// An IPv4 + UDP datagram with valid checksums.
pub fn udp_bytes(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() };
    let i = ip_repr(src, dst, IpProtocol::UDP, u.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    u.emit_with_payload(&mut b[20..], src, dst, payload);
    b
}

/// An IPv4 + TCP segment (window 8192, no options) with valid checksums
/// and `len` bytes of data ('a's).
#[allow(clippy::too_many_arguments)]
pub fn tcp_bytes(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    len: usize,
) -> Vec<u8> {
    let t = tcp_repr(sport, dport, flags, seq, ack, len);
    let i = ip_repr(src, dst, IpProtocol::TCP, t.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    t.emit_with_payload(&mut b[20..], src, dst, &vec![0x61; len]);
    b
}

/// The TCP header the tests' segments carry: window 8192, no options,
/// `len` bytes of data.
pub fn tcp_repr(sport: u16, dport: u16, flags: TcpFlags, seq: u32, ack: u32, len: usize) -> TcpRepr {
    TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags,
        window: 8192,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: len,
    }
}

pub fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An IPv6 header (hop limit `hlim`, no extension headers) followed by
/// `payload_len` zero bytes of `next`.
pub fn ip6_bytes(src: Ipv6Addr, dst: Ipv6Addr, next: IpProtocol, hlim: u8, payload_len: usize) -> Vec<u8> {
    let r = Ipv6Repr { src, dst, next_header: next, hop_limit: hlim, traffic_class: 0, flow_label: 0, payload_len };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    b
}

/// An IPv6 + UDP datagram with a valid checksum.
pub fn udp6_bytes(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (a6(src), a6(dst));
    let u = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() };
    let mut b = ip6_bytes(s, d, IpProtocol::UDP, 64, u.buffer_len());
    u.emit_with_payload_v6(&mut b[40..], s, d, payload);
    b
}

/// An IPv6 + TCP segment without data (as `tcp_repr`) with a valid
/// checksum.
pub fn tcp6_bytes(src: &str, dst: &str, sport: u16, dport: u16, flags: TcpFlags, seq: u32, ack: u32) -> Vec<u8> {
    let (s, d) = (a6(src), a6(dst));
    let t = tcp_repr(sport, dport, flags, seq, ack, 0);
    let mut b = ip6_bytes(s, d, IpProtocol::TCP, 64, t.buffer_len());
    t.emit_with_payload_v6(&mut b[40..], s, d, &[]);
    b
}

/// An IPv6 + ICMPv6 message with hop limit `hlim`.
pub fn icmp6_bytes(src: &str, dst: &str, hlim: u8, r: &Icmpv6Repr) -> Vec<u8> {
    let (s, d) = (a6(src), a6(dst));
    let mut b = ip6_bytes(s, d, IpProtocol::ICMPV6, hlim, r.buffer_len());
    r.emit(s, d, &mut b[40..]);
    b
}

/// An ICMPv6 echo request or reply (sequence 1, data "ping").
pub fn echo6_bytes(src: &str, dst: &str, reply: bool, ident: u16) -> Vec<u8> {
    let data = b"ping";
    let r = if reply {
        Icmpv6Repr::EchoReply { ident, seq_no: 1, data }
    } else {
        Icmpv6Repr::EchoRequest { ident, seq_no: 1, data }
    };
    icmp6_bytes(src, dst, 64, &r)
}

/// One pflog record as the tests look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRec {
    pub rule: u32,
    pub action: u8,
    pub reason: u8,
    /// The logged packet's source address.
    pub src: Ipv4Addr,
}

/// Drains `q` (pcap records of PFLOG headers) into its records.
pub fn pflog_records(q: &PflogQueue) -> Vec<LogRec> {
    let mut out = vec![];
    q.drain_to(&mut out, 0).unwrap();
    let mut recs = vec![];
    let mut b = &out[..];
    while b.len() >= 16 {
        let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
        let rec = &b[16..16 + len];
        recs.push(LogRec {
            rule: u32::from_be_bytes(rec[36..40].try_into().unwrap()),
            action: rec[2],
            reason: rec[3],
            src: Ipv4Addr::new(rec[64], rec[65], rec[66], rec[67]),
        });
        b = &b[16 + len..];
    }
    recs
}

/// `pf.test` on worker 0 at 1 s with heap buffers: the packet if it passes.
pub fn test(pf: &Pf, dir: Direction, ifp: &Interface, p: PacketBuf) -> Option<PacketBuf> {
    let mut r = vec![];
    match pf.test(0, Instant::from_secs(1), dir, ifp, p, &mut HeapBufs, &mut r) {
        Verdict::Pass(p) => Some(p),
        _ => None,
    }
}

/// pf in on em0, then pf out on em1 (a packet forwarded from A's side).
pub fn forward_out(pf: &Pf, n: &Net, p: PacketBuf) -> Option<PacketBuf> {
    let p = test(pf, Direction::In, &n.em0, p)?;
    test(pf, Direction::Out, &n.em1, p)
}

/// pf in on em1, then pf out on em0 (a packet forwarded from B's side).
pub fn forward_back(pf: &Pf, n: &Net, p: PacketBuf) -> Option<PacketBuf> {
    let p = test(pf, Direction::In, &n.em1, p)?;
    test(pf, Direction::Out, &n.em0, p)
}

/// What went through one hook: the verdict and the packets pf sent.
pub struct Seen {
    pub passed: Option<PacketBuf>,
    pub consumed: bool,
    pub sent: Vec<PacketBuf>,
}

/// `bytes` through pf on worker 0 at `t` seconds, with heap buffers.
pub fn hook(pf: &Pf, dir: Direction, ifp: &Interface, t: u64, bytes: Vec<u8>) -> Seen {
    let mut sent = vec![];
    let v = pf.test(0, Instant::from_secs(t), dir, ifp, PacketBuf::from_slice(&bytes), &mut HeapBufs, &mut sent);
    match v {
        Verdict::Pass(p) => Seen { passed: Some(p), consumed: false, sent },
        Verdict::Drop(_) => Seen { passed: None, consumed: false, sent },
        Verdict::Consumed => Seen { passed: None, consumed: true, sent },
    }
}
