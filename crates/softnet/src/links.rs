//! Opening the OS links an interface of the configuration names, through
//! softnet-io: the queues, and the MAC, MTU and carrier of the device.

use crate::config::{Driver, InterfaceConf};
use anyhow::{anyhow, bail};
use softnet_core::link::{LinkQueue, LinkState};
use softnet_wire::ethernet::MacAddr;
use std::hash::{Hash, Hasher};

/// An opened link: its queues and what the device says about itself.
pub struct OpenedLink {
    pub queues: Vec<Box<dyn LinkQueue>>,
    pub mac: MacAddr,
    pub mtu: u32,
}

/// A stable, locally administered MAC for a TAP: the TAP's own address is
/// the host side's, so the router end of the wire needs another.
fn tap_mac(dev: &str) -> MacAddr {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("softnet-tap", dev).hash(&mut h);
    let b = h.finish().to_be_bytes();
    MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
}

/// Opens `ic`'s device with one queue per worker (fewer if the device has
/// fewer: a TAP created without multi_queue gives one, an AF_XDP link one
/// per RX queue of the device, and softnet-io logs it).
pub fn open(ic: &InterfaceConf, workers: usize) -> anyhow::Result<OpenedLink> {
    let dev = ic.device.as_str();
    let ctx = |e: softnet_io::IoError| anyhow!("interface {:?}: {e}", ic.name);
    let (queues, mac) = match ic.driver {
        Driver::Virtual => bail!(
            "interface {:?}: driver \"virtual\" exists only in memory, for `softnet demo` and tests; use tap, packet or xdp",
            ic.name
        ),
        Driver::Loopback => bail!("interface {:?}: the loopback interface is the stack's own", ic.name),
        Driver::Tap => {
            // `offload = true`: the virtio-net header, TCP super-segments.
            let o = softnet_io::TapOptions { offload: ic.offload, ..Default::default() };
            let q = softnet_io::open_tap(dev, workers.max(1), &o).map_err(ctx)?;
            (q, tap_mac(dev))
        }
        Driver::Packet => {
            // `rx_ring`, `rx_ring_mib` (config_ring.rs) or softnet-io's defaults.
            let q = softnet_io::open_packet(dev, workers.max(1), &ic.rx_ring.options()).map_err(ctx)?;
            (q, MacAddr(softnet_io::mac_address(dev).map_err(ctx)?))
        }
        Driver::Xdp => {
            // One AF_XDP socket per device RX queue, up to one per worker
            // (softnet-io logs it when the device has fewer).
            // `xdp_mode = "generic"` skips the driver's mode (on a veth
            // it copies each local skb into a page-pool page first).
            let o = softnet_io::XdpOptions { force_skb_mode: ic.xdp_generic, ..Default::default() };
            let q = softnet_io::open_xdp(dev, workers.max(1), &o).map_err(ctx)?;
            (q, MacAddr(softnet_io::mac_address(dev).map_err(ctx)?))
        }
    };
    if queues.len() < workers {
        tracing::info!("{}: {} queue(s) for {workers} workers: workers share them", ic.name, queues.len());
    }
    let mtu = softnet_io::mtu(dev).map_err(ctx)?;
    Ok(OpenedLink { queues, mac, mtu })
}

/// The device's carrier, for the 1 s poll (unknown if it cannot be read:
/// the device went away).
pub fn carrier(ic: &InterfaceConf) -> LinkState {
    match ic.driver {
        Driver::Virtual | Driver::Loopback => LinkState::Unknown,
        Driver::Tap | Driver::Packet | Driver::Xdp => softnet_io::link_state(&ic.device).unwrap_or(LinkState::Unknown),
    }
}
