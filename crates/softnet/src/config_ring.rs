//! The AF_PACKET RX ring of an `[[interface]]` with driver "packet":
//! `rx_ring = "frames" | "blocks"` (TPACKET_V2 slots, a frame handed over
//! the moment it is written, or TPACKET_V3 blocks, handed over full or
//! after a 1 ms timer; softnet_io::packet) and `rx_ring_mib`, the ring's
//! memory per queue.

use crate::config::{ConfigError, Ctx, Driver};
use softnet_io::RxRing;
use toml::Spanned;

/// `rx_ring_mib`'s range: a queue's ring, 1 MiB (two V3 blocks of 256 KiB
/// and then some; 656 V2 slots at MTU 1500) to 256 MiB.
pub const RX_RING_MIB: std::ops::RangeInclusive<i64> = 1..=256;

/// The RX ring an interface asks for: `None`s are softnet-io's defaults
/// (`PacketOptions::default()`, `RxRing::default_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxRingConf {
    pub kind: Option<RxRing>,
    pub mib: Option<u32>,
}

impl RxRingConf {
    /// softnet-io's options for a queue of this interface.
    pub fn options(&self) -> softnet_io::PacketOptions {
        let d = softnet_io::PacketOptions::default();
        let kind = self.kind.unwrap_or(d.rx_ring);
        let bytes = self.mib.map_or(kind.default_bytes(), |m| (m as usize) << 20);
        softnet_io::PacketOptions { rx_ring: kind, rx_ring_bytes: bytes, ..d }
    }
}

/// Reads `rx_ring` and `rx_ring_mib` of interface `name`.
pub(crate) fn rx_ring_conf(
    cx: &Ctx,
    name: &str,
    driver: Driver,
    kind: &Option<Spanned<String>>,
    mib: &Option<Spanned<i64>>,
) -> Result<RxRingConf, ConfigError> {
    for (key, span) in [("rx_ring", kind.as_ref().map(|k| k.span())), ("rx_ring_mib", mib.as_ref().map(|m| m.span()))] {
        if let (Some(span), true) = (span, driver != Driver::Packet) {
            return Err(cx.error(span, format!("interface {name:?}: {key} is for driver \"packet\" only")));
        }
    }
    let kind = match kind {
        None => None,
        Some(k) => match k.get_ref().as_str() {
            "frames" => Some(RxRing::Frames),
            "blocks" => Some(RxRing::Blocks),
            other => {
                return Err(
                    cx.error(k.span(), format!("interface {name:?}: rx_ring = {other:?}: expected frames or blocks"))
                )
            }
        },
    };
    let mib = match mib {
        None => None,
        Some(m) if RX_RING_MIB.contains(m.get_ref()) => Some(*m.get_ref() as u32),
        Some(m) => {
            return Err(cx.error(
                m.span(),
                format!(
                    "interface {name:?}: rx_ring_mib {} out of range {}-{} (MiB per queue)",
                    m.get_ref(),
                    RX_RING_MIB.start(),
                    RX_RING_MIB.end()
                ),
            ))
        }
    };
    Ok(RxRingConf { kind, mib })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use softnet_io::RxRing;
    use std::path::Path;

    fn parse(iface: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("[[interface]]\nname = \"p\"\n{iface}"), Path::new("softnet.toml"))
    }

    fn err(iface: &str) -> String {
        parse(iface).unwrap_err().to_string()
    }

    #[test]
    fn the_ring_kind_and_size_are_read_and_reach_the_options() {
        let c = parse("driver = \"packet\"\nrx_ring = \"frames\"\nrx_ring_mib = 32\n").unwrap();
        let r = c.interfaces[0].rx_ring;
        assert_eq!((r.kind, r.mib), (Some(RxRing::Frames), Some(32)));
        let o = r.options();
        assert_eq!((o.rx_ring, o.rx_ring_bytes), (RxRing::Frames, 32 << 20));
        let c = parse("driver = \"packet\"\nrx_ring = \"blocks\"\n").unwrap();
        let o = c.interfaces[0].rx_ring.options();
        assert_eq!((o.rx_ring, o.rx_ring_bytes), (RxRing::Blocks, RxRing::Blocks.default_bytes()));
        // Neither key: softnet-io's default kind with its default memory.
        let c = parse("driver = \"packet\"\n").unwrap();
        let (o, d) = (c.interfaces[0].rx_ring.options(), softnet_io::PacketOptions::default());
        assert_eq!((o.rx_ring, o.rx_ring_bytes), (d.rx_ring, d.rx_ring.default_bytes()));
        // Only a size: the default kind, that memory; the range's ends.
        let c = parse("driver = \"packet\"\nrx_ring_mib = 1\n").unwrap();
        assert_eq!(c.interfaces[0].rx_ring.options().rx_ring_bytes, 1 << 20);
        assert!(parse("driver = \"packet\"\nrx_ring_mib = 256\n").is_ok());
    }

    #[test]
    fn a_bad_kind_a_size_out_of_range_or_another_driver_is_an_error_with_its_line() {
        let e = err("driver = \"packet\"\nrx_ring = \"v2\"\n");
        assert!(e.contains("line 4: interface \"p\": rx_ring = \"v2\": expected frames or blocks"), "{e}");
        let e = err("driver = \"packet\"\nrx_ring = \"frames\"\nrx_ring_mib = 0\n");
        assert!(e.contains("line 5: interface \"p\": rx_ring_mib 0 out of range 1-256 (MiB per queue)"), "{e}");
        let e = err("driver = \"packet\"\nrx_ring_mib = 257\n");
        assert!(e.contains("line 4: interface \"p\": rx_ring_mib 257 out of range 1-256"), "{e}");
        let e = err("driver = \"packet\"\nrx_ring_mib = -3\n");
        assert!(e.contains("rx_ring_mib -3 out of range"), "{e}");
        let e = err("driver = \"packet\"\nrx_ring_mib = \"16M\"\n");
        assert!(e.contains("line 4") && e.contains("invalid type"), "{e}");
        for driver in ["tap", "xdp"] {
            let e = err(&format!("driver = \"{driver}\"\nrx_ring = \"frames\"\n"));
            assert!(e.contains("line 4: interface \"p\": rx_ring is for driver \"packet\" only"), "{e}");
            let e = err(&format!("driver = \"{driver}\"\nrx_ring_mib = 8\n"));
            assert!(e.contains("line 4: interface \"p\": rx_ring_mib is for driver \"packet\" only"), "{e}");
        }
    }
}
