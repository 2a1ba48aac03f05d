//! Turning a device's offloads off through `SIOCETHTOOL`.
//!
//! A router must see MTU-sized, fully checksummed frames. With GRO/LRO on the
//! device merges received segments into super-frames; with TSO/GSO and TX
//! checksum offload the kernel's own frames out of it are not segmented or
//! summed. The AF_PACKET link does not do software segmentation, so at attach
//! it turns these off with the legacy per-feature ethtool commands (they work
//! on every kernel and driver that has the feature; a driver lacking one
//! answers EOPNOTSUPP, which is fine).

use crate::sys::{ctl_socket, ifreq_ioctl, IfReq};
use crate::IoError;

const SIOCETHTOOL: libc::Ioctl = 0x8946;

// <linux/ethtool.h> legacy get/set pairs.
const ETHTOOL_GLINK: u32 = 0x0a;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool(dev: &str, cmd: u32, data: u32, call: &'static str) -> Result<u32, IoError> {
    let s = ctl_socket(dev)?;
    let mut v = EthtoolValue { cmd, data };
    let mut ifr = IfReq::new(dev)?;
    ifr.set_ptr(&mut v);
    ifreq_ioctl(&s, SIOCETHTOOL, &mut ifr, dev, call)?;
    Ok(v.data)
}

/// The offloads [`disable_offloads`] turned off (to log or undo).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffloadsChanged {
    pub names: Vec<&'static str>,
}

/// Turns off GRO, LRO, TSO, GSO and TX checksum offload on `dev` where they
/// are on, and logs what it changed. Features the driver does not have are
/// skipped. Scatter-gather is left alone (it does not change frame sizes).
pub fn disable_offloads(dev: &str) -> Result<OffloadsChanged, IoError> {
    let mut changed = OffloadsChanged::default();
    // (name, get, set): TSO before TX checksum, since TSO depends on it.
    let features: [(&'static str, u32, u32, &'static str); 4] = [
        ("gro", ETHTOOL_GGRO, ETHTOOL_SGRO, "SIOCETHTOOL ETHTOOL_SGRO"),
        ("tso", ETHTOOL_GTSO, ETHTOOL_STSO, "SIOCETHTOOL ETHTOOL_STSO"),
        ("gso", ETHTOOL_GGSO, ETHTOOL_SGSO, "SIOCETHTOOL ETHTOOL_SGSO"),
        ("tx-checksum", ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM, "SIOCETHTOOL ETHTOOL_STXCSUM"),
    ];
    for (name, get, set, call) in features {
        match ethtool(dev, get, 0, "SIOCETHTOOL get") {
            Ok(0) => {}
            Ok(_) => match ethtool(dev, set, 0, call) {
                Ok(_) => changed.names.push(name),
                Err(e) if unsupported(&e) => {}
                Err(e) => return Err(e),
            },
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if let Ok(flags) = ethtool(dev, ETHTOOL_GFLAGS, 0, "SIOCETHTOOL ETHTOOL_GFLAGS") {
        if flags & ETH_FLAG_LRO != 0 {
            match ethtool(dev, ETHTOOL_SFLAGS, flags & !ETH_FLAG_LRO, "SIOCETHTOOL ETHTOOL_SFLAGS") {
                Ok(_) => changed.names.push("lro"),
                Err(e) if unsupported(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !changed.names.is_empty() {
        tracing::info!(
            "{dev}: turned off offloads {} so frames arrive MTU-sized and checksummed (oversized frames that still arrive are counted and dropped)",
            changed.names.join(", ")
        );
    }
    Ok(changed)
}

/// The driver's carrier (`ETHTOOL_GLINK`); EOPNOTSUPP if it cannot tell.
pub fn link_detected(dev: &str) -> Result<bool, IoError> {
    Ok(ethtool(dev, ETHTOOL_GLINK, 0, "SIOCETHTOOL ETHTOOL_GLINK")? != 0)
}

/// Reads one legacy offload flag (`"gro"`, `"tso"`, `"gso"`, `"tx-checksum"`, `"sg"`).
pub fn offload_enabled(dev: &str, name: &str) -> Result<bool, IoError> {
    let cmd = match name {
        "gro" => ETHTOOL_GGRO,
        "tso" => ETHTOOL_GTSO,
        "gso" => ETHTOOL_GGSO,
        "tx-checksum" => ETHTOOL_GTXCSUM,
        "sg" => ETHTOOL_GSG,
        _ => return Err(IoError::invalid(dev, format!("unknown offload {name}"))),
    };
    Ok(ethtool(dev, cmd, 0, "SIOCETHTOOL get")? != 0)
}

fn unsupported(e: &IoError) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL))
}
