//! softnet's OS links: the Linux devices a router attaches to.
//!
//! * [`tap`]: a TAP device through `/dev/net/tun` (`IFF_TAP | IFF_NO_PI`,
//!   `IFF_MULTI_QUEUE` for more than one queue), one non-blocking fd per queue.
//! * [`packet`]: an existing device through AF_PACKET sockets: a TPACKET_V3
//!   RX ring per queue (or TPACKET_V2 frames, [`RxRing`]; queues joined in a
//!   `PACKET_FANOUT_HASH` group) and a TPACKET_V2 TX ring per queue.
//! * [`xdp`]: an existing device through AF_XDP sockets (copy mode), one
//!   per RX queue, fed by a hand-assembled XDP redirect program attached
//!   with a BPF link (detached when the queues are dropped).
//! * [`hostif`]: the TAP twin of an interface for the host (created here,
//!   with the interface's MAC and MTU, IPv6 set up as a mirror).
//! * [`ifinfo`]: carrier, MTU, MAC and index of a device, for defaults and
//!   for the daemon's link-state polling.
//!
//! Every queue implements `softnet_core::link::LinkQueue` and carries its own
//! [`LinkStats`] (frames the link had to drop are counted, never lost
//! silently). Calls that touch a device by name act in the network namespace
//! of the calling thread.

pub mod ethtool;
pub mod hostif;
pub mod ifinfo;
mod l4csum;
pub mod packet;
mod packet_ring;
pub mod stats;
mod sys;
pub mod tap;
mod uring;
mod uring_rx;
pub mod vnet;
pub mod xdp;

pub use hostif::{open_host_tap, HostTap};
pub use ifinfo::{ifindex, link_state, mac_address, mtu};
pub use packet::{open_packet, PacketOptions, PacketQueue, RxRing, TxMode};
pub use stats::{LinkCounters, LinkStats};
pub use tap::{open_tap, TapCarrier, TapOptions, TapQueue};
pub use xdp::{open_xdp, XdpOptions, XdpQueue};

/// An error from opening or configuring an OS link. It names the device and
/// the call that failed, e.g. `sn-r0: TUNSETIFF: Device or resource busy`.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{dev}: {call}: {source}")]
    Os {
        dev: String,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{dev}: {msg}")]
    Invalid { dev: String, msg: String },
}

impl IoError {
    /// The OS error of the last failed call (`errno`), attributed to `dev`.
    pub(crate) fn last(dev: &str, call: &'static str) -> Self {
        IoError::Os { dev: dev.to_string(), call, source: std::io::Error::last_os_error() }
    }

    pub(crate) fn invalid(dev: &str, msg: impl Into<String>) -> Self {
        IoError::Invalid { dev: dev.to_string(), msg: msg.into() }
    }

    /// The `errno` behind this error, if it came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Os { source, .. } => source.raw_os_error(),
            IoError::Invalid { .. } => None,
        }
    }
}
