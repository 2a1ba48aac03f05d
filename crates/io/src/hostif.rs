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
    // On whatever the namespace's default: the twin mirrors IPv6 too.
    ("disable_ipv6", "0"),
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
    // What the stack punts to the host goes out a batch per system call
    // (io_uring), so the host's reader is woken once a batch, not once a
    // frame (crate::uring); what the host sends is read through a ring
    // (crate::uring_rx).
    let queues =
        TapQueue::open_all(dev, queues, &TapOptions { persist: false, bring_up: false, uring: true, offload: false })?;
    let batched = queues.iter().all(|q| q.writes_batched());
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
    tracing::info!(
        "{dev}: host interface created ({} queue(s), {})",
        queues.len(),
        if batched { "reads and batched writes through io_uring" } else { "one write(2) per frame" }
    );
    Ok(HostTap { queues, carrier })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root"]
    fn a_twin_is_created_with_the_mac_and_mtu_refused_twice_and_gone_when_closed() {
        let dev = format!("snhif{}", std::process::id() % 100_000);
        let mac = [0x02, 0x5e, 0, 0, 0x11, 0x22];
        let tap = open_host_tap(&dev, 2, mac, 1400).unwrap();
        assert_eq!(tap.queues.len(), 2);
        assert!(tap.queues.iter().all(|q| q.writes_batched()), "this kernel has io_uring");
        assert_eq!(ifinfo::mac_address(&dev).unwrap(), mac);
        assert_eq!(ifinfo::mtu(&dev).unwrap(), 1400);
        assert!(ifinfo::is_admin_up(&dev).unwrap());
        // Carrier off until the daemon mirrors the interface's state.
        assert_eq!(ifinfo::link_state(&dev).unwrap(), softnet_core::link::LinkState::Down);
        tap.carrier.set(true).unwrap();
        let e = open_host_tap(&dev, 1, mac, 1500).err().expect("the name is taken").to_string();
        assert!(e.contains("exists already"), "{e}");
        drop(tap);
        assert!(!ifinfo::exists(&dev), "a twin goes with its descriptors");
        assert!(open_host_tap("lo", 1, mac, 1500).is_err());
    }
}
