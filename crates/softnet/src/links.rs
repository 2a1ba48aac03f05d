//! Opening the OS links an interface of the configuration names, through
//! softnet-io: the queues, and the MAC, MTU and carrier of the device.

use crate::config::{Driver, InterfaceConf};
use anyhow::bail;
use softnet_core::link::{LinkQueue, LinkState};
use softnet_wire::ethernet::MacAddr;

/// An opened link: its queues and what the device says about itself.
pub struct OpenedLink {
    pub queues: Vec<Box<dyn LinkQueue>>,
    pub mac: MacAddr,
    pub mtu: u32,
}

/// Opens `ic`'s device with up to `workers` queues.
pub fn open(ic: &InterfaceConf, workers: usize) -> anyhow::Result<OpenedLink> {
    match ic.driver {
        Driver::Virtual => bail!(
            "interface {:?}: driver \"virtual\" exists only in memory, for `softnet demo` and tests; use tap or packet",
            ic.name
        ),
        Driver::Tap | Driver::Packet => {}
    }
    let _ = workers;
    bail!("interface {:?}: device links are not built yet (softnet-io)", ic.name)
}

/// The device's carrier, for the 1 s poll.
pub fn carrier(_ic: &InterfaceConf) -> LinkState {
    LinkState::Unknown
}
