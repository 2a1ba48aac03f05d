//! IPv4 options as pf.c's `pf_walk_option` and the IPv4 part of
//! `pf_walk_header` judge them while `pf_setup_pdesc` describes a packet:
//! a malformed option drops the packet (`ip-option`, whatever the rules
//! say); any option, and a header whose options are only padding (NOP,
//! EOL), makes the packet one with options, which a passing rule refuses
//! without `allow-opts`; IGMP may carry a router alert (RFC 2236), which
//! alone does not count, unless it is sent to 224.0.0.1 with a TTL other
//! than 1 (RFC 1112), which drops it.

use std::net::Ipv4Addr;

use softnet_wire::ipv4::option;

use crate::eval::Reason;

const PROTO_IGMP: u8 = 2;
const INADDR_ALLHOSTS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

/// pf's `pd->badopts` bits (IPv4's two).
const PF_OPT_OTHER: u8 = 0x01;
const PF_OPT_ROUTER_ALERT: u8 = 0x04;

/// `pf_walk_option` over the option octets of an IPv4 header: the
/// `badopts` bits, or the drop reason.
fn walk_option(opts: &[u8]) -> Result<u8, Reason> {
    let mut bad = 0;
    let mut off = 0;
    while off < opts.len() {
        let ty = opts[off];
        if ty == option::EOL {
            break;
        }
        if ty == option::NOP {
            off += 1;
            continue;
        }
        // Type and length must fit; the length covers both and stays
        // inside the header.
        let Some(&len) = opts.get(off + 1) else { return Err(Reason::IpOption) };
        let len = len as usize;
        if len < 2 || off + len > opts.len() {
            return Err(Reason::IpOption);
        }
        bad |= if ty == option::RA { PF_OPT_ROUTER_ALERT } else { PF_OPT_OTHER };
        off += len;
    }
    Ok(bad)
}

/// The IPv4 header walk of `pf_walk_header`: whether the packet counts
/// as one with IP options (`badopts`), or why it is dropped.
pub fn walk_header(opts: &[u8], proto: u8, ttl: u8, dst: Ipv4Addr) -> Result<bool, Reason> {
    let mut bad = 0;
    if !opts.is_empty() {
        bad = walk_option(opts)?;
        // Header options that are only padding are fishy.
        if bad == 0 {
            bad = PF_OPT_OTHER;
        }
    }
    if proto == PROTO_IGMP {
        if ttl != 1 && dst == INADDR_ALLHOSTS_GROUP {
            return Err(Reason::IpOption);
        }
        bad &= !PF_OPT_ROUTER_ALERT;
    }
    Ok(bad != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOP: u8 = option::NOP;
    const EOL: u8 = option::EOL;
    const RA: [u8; 4] = [option::RA, 4, 0, 0];
    const UDP: u8 = 17;
    const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
    const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    #[test]
    fn no_options_are_no_options() {
        assert_eq!(walk_header(&[], UDP, 64, HOST), Ok(false));
    }

    #[test]
    fn options_of_padding_only_are_still_options() {
        assert_eq!(walk_header(&[NOP, NOP, NOP, NOP], UDP, 64, HOST), Ok(true));
        assert_eq!(walk_header(&[EOL, 0, 0, 0], UDP, 64, HOST), Ok(true));
        assert_eq!(walk_header(&[NOP, NOP, NOP, EOL], PROTO_IGMP, 1, GROUP), Ok(true));
    }

    #[test]
    fn any_real_option_is_an_option() {
        // Record route (7), timestamp (68), a router alert outside IGMP.
        assert_eq!(walk_header(&[option::RR, 7, 4, 0, 0, 0, 0, EOL], UDP, 64, HOST), Ok(true));
        assert_eq!(walk_header(&[option::TS, 4, 5, 0], UDP, 64, HOST), Ok(true));
        assert_eq!(walk_header(&RA, UDP, 64, HOST), Ok(true));
    }

    #[test]
    fn igmp_with_only_a_router_alert_has_no_options() {
        assert_eq!(walk_header(&RA, PROTO_IGMP, 1, GROUP), Ok(false));
        assert_eq!(walk_header(&RA, PROTO_IGMP, 1, INADDR_ALLHOSTS_GROUP), Ok(false));
        // A router alert and something else: options.
        assert_eq!(walk_header(&[option::RA, 4, 0, 0, 7, 3, 4, EOL], PROTO_IGMP, 1, GROUP), Ok(true));
    }

    #[test]
    fn igmp_to_all_hosts_with_a_ttl_other_than_one_is_dropped() {
        assert_eq!(walk_header(&RA, PROTO_IGMP, 2, INADDR_ALLHOSTS_GROUP), Err(Reason::IpOption));
        assert_eq!(walk_header(&[], PROTO_IGMP, 64, INADDR_ALLHOSTS_GROUP), Err(Reason::IpOption));
        assert_eq!(walk_header(&[], PROTO_IGMP, 64, GROUP), Ok(false));
    }

    #[test]
    fn malformed_options_are_dropped() {
        // No room for the length, a length below 2, a length past the end.
        assert_eq!(walk_header(&[NOP, NOP, NOP, 7], UDP, 64, HOST), Err(Reason::IpOption));
        assert_eq!(walk_header(&[7, 1, 0, 0], UDP, 64, HOST), Err(Reason::IpOption));
        assert_eq!(walk_header(&[7, 8, 4, 0], UDP, 64, HOST), Err(Reason::IpOption));
        // Past an EOL nothing is looked at.
        assert_eq!(walk_header(&[EOL, 7, 1, 0], UDP, 64, HOST), Ok(true));
    }
}
