//! The IP options a forwarding router writes into (RFC 791 §3.1, OpenBSD
//! ip_dooptions): Record Route and Timestamp.

use super::IPV4_MIN_HEADER;
use std::net::Ipv4Addr;

/// IP option types the router writes into (RFC 791 §3.1).
const IPOPT_EOL: u8 = 0;
const IPOPT_NOP: u8 = 1;
const IPOPT_RR: u8 = 7;
const IPOPT_TS: u8 = 68;
const IPOPT_TS_TSONLY: u8 = 0;
const IPOPT_TS_TSANDADDR: u8 = 1;
const IPOPT_TS_PRESPEC: u8 = 3;

/// Adds this hop to Record Route (the outgoing interface's address) and
/// Timestamp options (RFC 791 §3.1, OpenBSD ip_dooptions) of `hdr`, a whole
/// IPv4 header whose options `check_options` already accepted. Returns
/// whether anything changed (the caller re-sums the header), or the
/// parameter-problem pointer (offset in the header) of a bad option.
pub(super) fn record_options(
    hdr: &mut [u8],
    out_addr: Ipv4Addr,
    in_addr: Ipv4Addr,
    ts_ms: u32,
    is_mine: impl Fn(Ipv4Addr) -> bool,
) -> Result<bool, u8> {
    let mut changed = false;
    let mut i = IPV4_MIN_HEADER;
    while i < hdr.len() {
        let kind = hdr[i];
        if kind == IPOPT_EOL {
            break;
        }
        if kind == IPOPT_NOP {
            i += 1;
            continue;
        }
        let len = hdr.get(i + 1).copied().unwrap_or(0) as usize;
        if len < 2 || i + len > hdr.len() {
            return Err((i + 1) as u8);
        }
        let opt = &mut hdr[i..i + len];
        match kind {
            IPOPT_RR if len >= 3 => {
                let ptr = opt[2] as usize;
                if ptr < 4 {
                    return Err((i + 2) as u8);
                }
                // A full list is forwarded as it is.
                if ptr + 3 <= len {
                    opt[ptr - 1..ptr + 3].copy_from_slice(&out_addr.octets());
                    opt[2] += 4;
                    changed = true;
                }
            }
            IPOPT_TS if len >= 4 => {
                let ptr = opt[2] as usize;
                if ptr < 5 {
                    return Err((i + 2) as u8);
                }
                let flag = opt[3] & 0x0f;
                let entry = if flag == IPOPT_TS_TSONLY { 4 } else { 8 };
                if !matches!(flag, IPOPT_TS_TSONLY | IPOPT_TS_TSANDADDR | IPOPT_TS_PRESPEC) {
                    return Err((i + 3) as u8);
                }
                if ptr + entry - 1 > len {
                    // No room: count the hop in the overflow field.
                    let overflow = opt[3] >> 4;
                    if overflow == 15 {
                        return Err((i + 3) as u8);
                    }
                    opt[3] = ((overflow + 1) << 4) | flag;
                    changed = true;
                } else {
                    let at = ptr - 1;
                    let ts = ts_ms.to_be_bytes();
                    match flag {
                        IPOPT_TS_TSONLY => {
                            opt[at..at + 4].copy_from_slice(&ts);
                            opt[2] += 4;
                            changed = true;
                        }
                        IPOPT_TS_TSANDADDR => {
                            opt[at..at + 4].copy_from_slice(&in_addr.octets());
                            opt[at + 4..at + 8].copy_from_slice(&ts);
                            opt[2] += 8;
                            changed = true;
                        }
                        _ => {
                            // Prespecified: only the hop named next stamps.
                            let named = Ipv4Addr::new(opt[at], opt[at + 1], opt[at + 2], opt[at + 3]);
                            if is_mine(named) {
                                opt[at + 4..at + 8].copy_from_slice(&ts);
                                opt[2] += 8;
                                changed = true;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        i += len;
    }
    Ok(changed)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn header_with(opts: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; IPV4_MIN_HEADER];
        h.extend_from_slice(opts);
        while !h.len().is_multiple_of(4) {
            h.push(IPOPT_EOL);
        }
        h
    }

    #[test]
    fn record_route_gets_the_outgoing_address_until_full() {
        let out = Ipv4Addr::new(10, 0, 2, 1);
        let mut h = header_with(&[IPOPT_RR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(record_options(&mut h, out, Ipv4Addr::UNSPECIFIED, 0, |_| false), Ok(true));
        assert_eq!(&h[20..31], &[IPOPT_RR, 11, 8, 10, 0, 2, 1, 0, 0, 0, 0]);
        assert_eq!(record_options(&mut h, out, Ipv4Addr::UNSPECIFIED, 0, |_| false), Ok(true));
        assert_eq!(h[22], 12);
        // Full: forwarded unchanged.
        assert_eq!(record_options(&mut h, out, Ipv4Addr::UNSPECIFIED, 0, |_| false), Ok(false));
    }

    #[test]
    fn timestamp_options_stamp_count_overflow_and_honour_prespecified_hops() {
        let a = Ipv4Addr::new(10, 0, 1, 1);
        let mut h = header_with(&[IPOPT_TS, 12, 5, IPOPT_TS_TSANDADDR, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(record_options(&mut h, a, a, 0x0102_0304, |_| false), Ok(true));
        assert_eq!(&h[24..32], &[10, 0, 1, 1, 1, 2, 3, 4]);
        assert_eq!(h[22], 13);
        // Full now: the overflow count goes up.
        assert_eq!(record_options(&mut h, a, a, 0, |_| false), Ok(true));
        assert_eq!(h[23] >> 4, 1);
        let mut p = header_with(&[IPOPT_TS, 12, 5, IPOPT_TS_PRESPEC, 10, 0, 9, 9, 0, 0, 0, 0]);
        assert_eq!(record_options(&mut p, a, a, 7, |ip| ip == Ipv4Addr::new(10, 0, 9, 9)), Ok(true));
        assert_eq!(&p[28..32], &7u32.to_be_bytes());
        let mut q = header_with(&[IPOPT_TS, 12, 5, IPOPT_TS_PRESPEC, 10, 0, 9, 9, 0, 0, 0, 0]);
        assert_eq!(record_options(&mut q, a, a, 7, |_| false), Ok(false), "another hop's turn");
        let mut bad = header_with(&[IPOPT_TS, 8, 5, 2, 0, 0, 0, 0]);
        assert_eq!(record_options(&mut bad, a, a, 7, |_| false), Err(23));
    }
}
