//! What the pf integration tests share: two interfaces in an interface
//! table (em0 10.0.1.1/24, em1 10.0.2.1/24, egress em1), a resolver that
//! knows them, and a Pf loaded from pf.conf text.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use softnet_core::filter::BufferSource;
use softnet_core::iface::{IfAddr, Interface, InterfaceConfig, InterfaceTable};
use softnet_core::packet::PacketBuf;
use softnet_core::vlink;
use softnet_pf::{parse_ruleset, Pf, StaticResolver};

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
