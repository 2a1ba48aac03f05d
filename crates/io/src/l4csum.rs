//! The TCP/UDP checksum of a frame the sender left to offload
//! (CHECKSUM_PARTIAL: only the pseudo-header sum in the field), filled in
//! so the frame can be forwarded as is (AF_PACKET's
//! `TP_STATUS_CSUMNOTREADY`).

use softnet_wire::checksum;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;

/// Fills in the TCP/UDP checksum of a CHECKSUM_PARTIAL frame (IPv4 or IPv6
/// without extension headers, behind any number of VLAN tags). False if the
/// frame is not one of those or is malformed; nothing is changed then.
pub fn complete_l4_checksum(f: &mut [u8]) -> bool {
    let be16 = |f: &[u8], o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    if f.len() < ETH_HLEN {
        return false;
    }
    let mut off = 12;
    let mut et = be16(f, off);
    while et == 0x8100 || et == 0x88a8 {
        off += VLAN_HLEN;
        if f.len() < off + 2 {
            return false;
        }
        et = be16(f, off);
    }
    let l3 = off + 2;
    let (proto, l4, end, pseudo) = match et {
        0x0800 => {
            if f.len() < l3 + 20 {
                return false;
            }
            let ihl = (f[l3] & 0x0f) as usize * 4;
            let total = be16(f, l3 + 2) as usize;
            let frag = be16(f, l3 + 6) & 0x3fff;
            if f[l3] >> 4 != 4 || ihl < 20 || total < ihl || l3 + total > f.len() || frag != 0 {
                return false;
            }
            let proto = f[l3 + 9];
            let src = std::net::Ipv4Addr::new(f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15]);
            let dst = std::net::Ipv4Addr::new(f[l3 + 16], f[l3 + 17], f[l3 + 18], f[l3 + 19]);
            let pseudo = checksum::pseudo_header_v4(src, dst, proto, (total - ihl) as u16);
            (proto, l3 + ihl, l3 + total, pseudo)
        }
        0x86dd => {
            if f.len() < l3 + 40 {
                return false;
            }
            let plen = be16(f, l3 + 4) as usize;
            if l3 + 40 + plen > f.len() {
                return false;
            }
            let proto = f[l3 + 6];
            let pseudo = checksum::combine(checksum::sum(&f[l3 + 8..l3 + 40]), plen as u32 + proto as u32);
            (proto, l3 + 40, l3 + 40 + plen, pseudo)
        }
        _ => return false,
    };
    let field = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    if l4 + field + 2 > end {
        return false;
    }
    f[l4 + field..l4 + field + 2].fill(0);
    let mut c = checksum::finish(checksum::combine(pseudo, checksum::sum(&f[l4..end])));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    f[l4 + field..l4 + field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP 10.0.0.1:1000 -> 10.0.0.2:2000, payload "abc",
    /// checksum field holding only the pseudo-header sum (as CHECKSUM_PARTIAL).
    fn partial_udp() -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let ip = [0x45, 0, 0, 31, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 11, 0, 0, b'a', b'b', b'c']);
        let ps = checksum::pseudo_header_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 11);
        f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&(ps as u16).to_be_bytes());
        f.extend_from_slice(&[0; 7]); // Ethernet padding, not summed
        f
    }

    #[test]
    fn completes_partial_udp_checksum() {
        let mut f = partial_udp();
        assert!(complete_l4_checksum(&mut f));
        // Verify: pseudo + segment sums to 0xffff.
        let ps = checksum::pseudo_header_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 11);
        assert_eq!(checksum::finish(checksum::combine(ps, checksum::sum(&f[34..45]))), 0);
    }

    #[test]
    fn completes_behind_vlan_tag_and_ignores_other_protocols() {
        let plain = partial_udp();
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&plain[12..]);
        let mut expect = plain.clone();
        assert!(complete_l4_checksum(&mut expect));
        assert!(complete_l4_checksum(&mut tagged));
        assert_eq!(&tagged[18 + 20 + 6..18 + 20 + 8], &expect[14 + 20 + 6..14 + 20 + 8]);
        let mut arp = vec![0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!complete_l4_checksum(&mut arp));
        let mut short = partial_udp();
        short[16..18].copy_from_slice(&500u16.to_be_bytes()); // total length past the frame
        assert!(!complete_l4_checksum(&mut short));
    }
}
