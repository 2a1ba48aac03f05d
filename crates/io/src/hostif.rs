//! The host's twin of an interface (softnet_core::hostif): a TAP that this
//! process creates (never an existing device) and sets up as the
//! interface's mirror before the stack takes its queues: the interface's
//! MAC and MTU, IPv6 without an address or DAD of its own (the stack
//! gives it the interface's addresses, already checked), no router
//! solicitations or autoconfiguration from the host (router
//! advertisements are the stack's), addresses kept when the carrier goes.

use crate::tap::{TapCarrier, TapOptions, TapQueue};
use crate::{ifinfo, IoError};

/// An opened twin: its queues for the stack and a carrier handle.
pub struct HostTap {
    pub queues: Vec<TapQueue>,
    pub carrier: TapCarrier,
}

/// `/proc/sys/net/ipv6/conf/DEV/` settings a twin gets before it comes up.
const IPV6_SETTINGS: &[(&str, &str)] = &[
    // No link-local address of its own: the stack gives it the
    // interface's (the same EUI-64 address, already through DAD).
    ("addr_gen_mode", "1"),
    ("accept_dad", "0"),
    ("dad_transmits", "0"),
    ("accept_ra", "0"),
    ("autoconf", "0"),
    ("router_solicitations", "0"),
    ("keep_addr_on_down", "1"),
];

/// Creates TAP `dev` with `queues` queues as the twin of an interface with
/// `mac` and `mtu`, up with its carrier off (the caller mirrors the
/// interface's link state). A device of that name must not exist.
pub fn open_host_tap(dev: &str, queues: usize, mac: [u8; 6], mtu: u32) -> Result<HostTap, IoError> {
    crate::sys::check_name(dev)?;
    if ifinfo::exists(dev) {
        return Err(IoError::invalid(
            dev,
            "a device of that name exists already (a host interface is created by softnet)",
        ));
    }
    let queues = TapQueue::open_all(dev, queues, &TapOptions { persist: false, bring_up: false })?;
    let carrier = queues[0].carrier_handle()?;
    carrier.set(false)?;
    ifinfo::set_mac_address(dev, mac)?;
    ifinfo::set_mtu(dev, mtu)?;
    let base = format!("/proc/sys/net/ipv6/conf/{dev}");
    if std::path::Path::new(&base).exists() {
        for (key, value) in IPV6_SETTINGS {
            let path = format!("{base}/{key}");
            // A kernel without one of them (keep_addr_on_down is 4.10+) is
            // logged, not fatal.
            if let Err(e) = std::fs::write(&path, value) {
                tracing::warn!("{dev}: cannot set {path} to {value}: {e}");
            }
        }
    }
    ifinfo::set_admin_up(dev, true)?;
    tracing::info!("{dev}: host interface created ({} queue(s))", queues.len());
    Ok(HostTap { queues, carrier })
}
