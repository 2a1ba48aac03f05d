//! Facts about a Linux device: index, carrier, MTU, MAC; and bringing it up.
//!
//! All by ioctl on a datagram socket, so they act in the calling thread's
//! network namespace (sysfs would show the namespace sysfs was mounted in).

use crate::sys::{ctl_socket, ifreq_ioctl, IfReq};
use crate::IoError;
use softnet_core::link::LinkState;

/// The device's interface index.
pub fn ifindex(dev: &str) -> Result<u32, IoError> {
    let mut ifr = IfReq::new(dev)?;
    let s = ctl_socket(dev)?;
    ifreq_ioctl(&s, libc::SIOCGIFINDEX as libc::Ioctl, &mut ifr, dev, "SIOCGIFINDEX")?;
    Ok(ifr.int() as u32)
}

/// Whether the device exists (in the calling thread's namespace).
pub fn exists(dev: &str) -> bool {
    ifindex(dev).is_ok()
}

fn flags(dev: &str) -> Result<i16, IoError> {
    let mut ifr = IfReq::new(dev)?;
    let s = ctl_socket(dev)?;
    ifreq_ioctl(&s, libc::SIOCGIFFLAGS as libc::Ioctl, &mut ifr, dev, "SIOCGIFFLAGS")?;
    Ok(ifr.short())
}

/// Carrier as the daemon should report it: `Up` when the device is
/// administratively up and has carrier, else `Down`. Carrier comes from
/// `ETHTOOL_GLINK` (the driver's `netif_carrier_ok`, current at once); for
/// drivers without it, from `IFF_RUNNING` (operstate, which the kernel's
/// link watcher may update up to a second late). The daemon polls this and
/// emits a route message on change.
pub fn link_state(dev: &str) -> Result<LinkState, IoError> {
    let f = flags(dev)? as i32;
    if f & libc::IFF_UP == 0 {
        return Ok(LinkState::Down);
    }
    let carrier = match crate::ethtool::link_detected(dev) {
        Ok(c) => c,
        Err(_) => f & libc::IFF_RUNNING != 0,
    };
    Ok(if carrier { LinkState::Up } else { LinkState::Down })
}

/// Whether the device is administratively up (`IFF_UP`).
pub fn is_admin_up(dev: &str) -> Result<bool, IoError> {
    Ok(flags(dev)? as i32 & libc::IFF_UP != 0)
}

/// Sets or clears `IFF_UP`. Returns whether it changed anything.
pub fn set_admin_up(dev: &str, up: bool) -> Result<bool, IoError> {
    let mut ifr = IfReq::new(dev)?;
    let s = ctl_socket(dev)?;
    ifreq_ioctl(&s, libc::SIOCGIFFLAGS as libc::Ioctl, &mut ifr, dev, "SIOCGIFFLAGS")?;
    let old = ifr.short();
    let new = if up { old | libc::IFF_UP as i16 } else { old & !(libc::IFF_UP as i16) };
    if new == old {
        return Ok(false);
    }
    ifr.set_short(new);
    ifreq_ioctl(&s, libc::SIOCSIFFLAGS as libc::Ioctl, &mut ifr, dev, "SIOCSIFFLAGS")?;
    Ok(true)
}

/// The device's MTU (bytes of L3 payload per frame).
pub fn mtu(dev: &str) -> Result<u32, IoError> {
    let mut ifr = IfReq::new(dev)?;
    let s = ctl_socket(dev)?;
    ifreq_ioctl(&s, libc::SIOCGIFMTU as libc::Ioctl, &mut ifr, dev, "SIOCGIFMTU")?;
    Ok(ifr.int() as u32)
}

/// The device's hardware (MAC) address; an error if it is not Ethernet.
pub fn mac_address(dev: &str) -> Result<[u8; 6], IoError> {
    let mut ifr = IfReq::new(dev)?;
    let s = ctl_socket(dev)?;
    ifreq_ioctl(&s, libc::SIOCGIFHWADDR as libc::Ioctl, &mut ifr, dev, "SIOCGIFHWADDR")?;
    // The union holds a `struct sockaddr`: family, then the address bytes.
    let family = u16::from_ne_bytes([ifr.data[0], ifr.data[1]]);
    if family != libc::ARPHRD_ETHER {
        return Err(IoError::invalid(dev, format!("not an Ethernet device (hardware type {family})")));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&ifr.data[2..8]);
    Ok(mac)
}

/// Sets the device's MTU.
pub fn set_mtu(dev: &str, mtu: u32) -> Result<(), IoError> {
    let mut ifr = IfReq::new(dev)?;
    let s = ctl_socket(dev)?;
    ifr.data[..4].copy_from_slice(&(mtu as i32).to_ne_bytes());
    ifreq_ioctl(&s, libc::SIOCSIFMTU as libc::Ioctl, &mut ifr, dev, "SIOCSIFMTU")
}

/// Sets the device's Ethernet address (the device should be down, or
/// support live changes as TAPs do).
pub fn set_mac_address(dev: &str, mac: [u8; 6]) -> Result<(), IoError> {
    let mut ifr = IfReq::new(dev)?;
    let s = ctl_socket(dev)?;
    ifr.data[..2].copy_from_slice(&libc::ARPHRD_ETHER.to_ne_bytes());
    ifr.data[2..8].copy_from_slice(&mac);
    ifreq_ioctl(&s, libc::SIOCSIFHWADDR as libc::Ioctl, &mut ifr, dev, "SIOCSIFHWADDR")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_facts() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert!(mtu("lo").unwrap() >= 1500);
        // Loopback is not Ethernet.
        let e = mac_address("lo").unwrap_err().to_string();
        assert!(e.starts_with("lo: not an Ethernet device"), "{e}");
    }

    #[test]
    fn errors_name_device_and_call() {
        let e = mtu("snio-nosuchdev").unwrap_err().to_string();
        assert!(e.starts_with("snio-nosuchdev: SIOCGIFMTU: No such device"), "{e}");
        let e = mtu("a-name-far-too-long").unwrap_err().to_string();
        assert!(e.contains("not a valid device name"), "{e}");
    }
}
