//! The virtio-net header a TAP opened with `IFF_VNET_HDR` puts in front of
//! every frame, both ways (`struct virtio_net_hdr`, 10 bytes, the host's
//! byte order: the tun driver's default on a little-endian host; virtio
//! 1.x §5.1.6): checksum offload (`NEEDS_CSUM`: the sender left the
//! transport checksum to be computed from `csum_start` to the end and
//! stored at `csum_start + csum_offset`, the field holding the
//! pseudo-header sum) and segmentation offload (`gso_type`, `gso_size`:
//! one frame stands for a train of segments of `gso_size` payload bytes
//! each, with `hdr_len` bytes of headers).
//!
//! Here: encoding the header of what softnet writes (a plain frame, or a
//! TCP/IPv4 or TCP/IPv6 super-frame for the kernel to take whole or cut), decoding
//! and checking what it reads (every field checked against the frame, a
//! bad one a counted drop with its reason), and completing a `NEEDS_CSUM`
//! frame's checksum as `l4csum` does for AF_PACKET's CSUMNOTREADY.

use softnet_wire::checksum;

/// The header's length (`sizeof(struct virtio_net_hdr)`, the tun
/// driver's default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the transport checksum is to be completed (CHECKSUM_PARTIAL).
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was validated (CHECKSUM_UNNECESSARY).
pub const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the train carries ECN's CWR (TCP only).
pub const GSO_ECN: u8 = 0x80;
/// The smallest `gso_size` taken: Linux's TCP_MIN_SND_MSS, below which
/// its TCP never segments.
pub const GSO_SIZE_MIN: u16 = 48;

/// A decoded virtio-net header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

/// Why a read frame's header was refused (each a counted drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetError {
    /// Shorter than the header itself.
    Short,
    /// A `flags` bit or `gso_type` this code does not know (UDP
    /// fragmentation offload included: softnet never offers it).
    BadGsoType(u8),
    /// `gso_size` 0 on a segmentation frame.
    ZeroGsoSize,
    /// `gso_size` below [`GSO_SIZE_MIN`] (no TCP sends such segments: a
    /// train cut at it would be thousands of segments).
    SmallGsoSize(u16),
    /// `hdr_len` beyond the frame, or below the checksum's start.
    HdrLen { hdr_len: u16, frame: usize },
    /// `csum_start` / `csum_offset` put the checksum field outside the
    /// frame.
    CsumOutside { start: u16, offset: u16, frame: usize },
    /// A segmentation frame without `NEEDS_CSUM` (the kernel sends none:
    /// its segments' checksums could not be computed).
    GsoWithoutCsum,
}

impl std::fmt::Display for VnetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            VnetError::Short => write!(f, "frame shorter than its virtio-net header"),
            VnetError::BadGsoType(t) => write!(f, "unknown gso_type or flags {t:#x}"),
            VnetError::ZeroGsoSize => write!(f, "gso_size 0 on a segmentation frame"),
            VnetError::SmallGsoSize(s) => write!(f, "gso_size {s} below {GSO_SIZE_MIN}"),
            VnetError::HdrLen { hdr_len, frame } => write!(f, "hdr_len {hdr_len} outside the {frame}-byte frame"),
            VnetError::CsumOutside { start, offset, frame } => {
                write!(f, "checksum at {start}+{offset} outside the {frame}-byte frame")
            }
            VnetError::GsoWithoutCsum => write!(f, "segmentation frame without NEEDS_CSUM"),
        }
    }
}

impl VnetHdr {
    /// The header of a frame that needs nothing (all zero).
    pub const PLAIN: VnetHdr =
        VnetHdr { flags: 0, gso_type: GSO_NONE, hdr_len: 0, gso_size: 0, csum_start: 0, csum_offset: 0 };

    pub fn encode(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// The header at the start of `b` (nothing checked but its length).
    pub fn decode(b: &[u8]) -> Result<VnetHdr, VnetError> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN).and_then(|h| h.try_into().ok()).ok_or(VnetError::Short)?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// The segmentation type without the ECN bit.
    pub fn gso(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// Checks a read header against its frame (`frame` bytes after the
    /// header), as the kernel's virtio_net_hdr_to_skb checks what user
    /// space writes: a known type, a gso size, header and checksum field
    /// inside the frame.
    pub fn check(&self, frame: usize) -> Result<(), VnetError> {
        if self.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
            return Err(VnetError::BadGsoType(self.flags));
        }
        let gso = self.gso();
        if !matches!(gso, GSO_NONE | GSO_TCPV4 | GSO_TCPV6) || (gso == GSO_NONE && self.gso_type & GSO_ECN != 0) {
            return Err(VnetError::BadGsoType(self.gso_type));
        }
        if self.flags & F_NEEDS_CSUM != 0 {
            let field = self.csum_start as usize + self.csum_offset as usize + 2;
            if field > frame {
                return Err(VnetError::CsumOutside { start: self.csum_start, offset: self.csum_offset, frame });
            }
        }
        if gso != GSO_NONE {
            if self.gso_size == 0 {
                return Err(VnetError::ZeroGsoSize);
            }
            if self.gso_size < GSO_SIZE_MIN {
                return Err(VnetError::SmallGsoSize(self.gso_size));
            }
            if self.flags & F_NEEDS_CSUM == 0 {
                return Err(VnetError::GsoWithoutCsum);
            }
            if self.hdr_len as usize > frame || (self.hdr_len as usize) < self.csum_start as usize {
                return Err(VnetError::HdrLen { hdr_len: self.hdr_len, frame });
            }
        } else if self.hdr_len as usize > frame {
            return Err(VnetError::HdrLen { hdr_len: self.hdr_len, frame });
        }
        Ok(())
    }

    /// The header of a TCP/IPv4 super-frame softnet writes: `eth_ip` bytes
    /// of Ethernet and IP header, `tcp_hl` of TCP header, cut by the
    /// kernel (or taken whole by a local receiver, as a GRO'd packet) into
    /// segments of `mss` payload bytes; the checksum is the kernel's
    /// (`NEEDS_CSUM`: the field must hold the pseudo-header sum, see
    /// [`partial_tcp4`]).
    pub fn tcp4_train(eth_ip: usize, tcp_hl: usize, mss: u16) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: (eth_ip + tcp_hl) as u16,
            gso_size: mss,
            csum_start: eth_ip as u16,
            csum_offset: 16,
        }
    }

    /// [`VnetHdr::tcp4_train`] for a TCP/IPv6 super-frame (`GSO_TCPV6`;
    /// the field's pseudo-header sum from [`partial_tcp6`]).
    pub fn tcp6_train(eth_ip: usize, tcp_hl: usize, mss: u16) -> VnetHdr {
        VnetHdr { gso_type: GSO_TCPV6, ..VnetHdr::tcp4_train(eth_ip, tcp_hl, mss) }
    }
}

/// Completes the checksum of a `NEEDS_CSUM` frame (after its header was
/// checked): the ones'-complement sum from `csum_start` to the end, the
/// field's pseudo-header sum included, stored at `csum_start +
/// csum_offset` (virtio 1.x §5.1.6.2; the kernel's skb_checksum_help).
pub fn complete_csum(frame: &mut [u8], h: &VnetHdr) {
    let start = h.csum_start as usize;
    let field = start + h.csum_offset as usize;
    let c = checksum::finish(checksum::sum(&frame[start..]));
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Makes a TCP/IPv4 frame (Ethernet header, then IPv4 at 14) a
/// `NEEDS_CSUM` one: its checksum field set to the pseudo-header sum over
/// the whole segment (Linux's `__tcp_v4_send_check` for CHECKSUM_PARTIAL),
/// whatever it held. Returns (IP header length, TCP header length), or
/// None if the frame is not an unfragmented TCP/IPv4 packet whose headers
/// fit it.
pub fn partial_tcp4(frame: &mut [u8]) -> Option<(usize, usize)> {
    const L3: usize = 14;
    if frame.len() < L3 + 20 || frame[12..14] != [0x08, 0x00] || frame[L3] >> 4 != 4 {
        return None;
    }
    let ihl = (frame[L3] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([frame[L3 + 2], frame[L3 + 3]]) as usize;
    let frag = u16::from_be_bytes([frame[L3 + 6], frame[L3 + 7]]) & 0x3fff;
    if ihl < 20 || frame[L3 + 9] != 6 || frag != 0 || L3 + total != frame.len() || total < ihl + 20 {
        return None;
    }
    let l4 = L3 + ihl;
    let thl = (frame[l4 + 12] >> 4) as usize * 4;
    if thl < 20 || ihl + thl > total {
        return None;
    }
    let a = |o: usize| std::net::Ipv4Addr::new(frame[o], frame[o + 1], frame[o + 2], frame[o + 3]);
    let pseudo = checksum::pseudo_header_v4(a(L3 + 12), a(L3 + 16), 6, (total - ihl) as u16);
    // The field holds the folded sum itself, not its complement.
    let p = checksum::fold(pseudo);
    frame[l4 + 16..l4 + 18].copy_from_slice(&p.to_be_bytes());
    Some((ihl, thl))
}

/// [`partial_tcp4`] for a TCP/IPv6 frame (Ethernet header, then IPv6 at
/// 14, TCP right after the fixed header: what the router's own segments
/// are; Linux's `__tcp_v6_send_check`). Returns (40, TCP header length),
/// or None if the frame is not such a packet whose headers fit it.
pub fn partial_tcp6(frame: &mut [u8]) -> Option<(usize, usize)> {
    const L3: usize = 14;
    const L4: usize = L3 + 40;
    if frame.len() < L4 + 20 || frame[12..14] != [0x86, 0xdd] || frame[L3] >> 4 != 6 || frame[L3 + 6] != 6 {
        return None;
    }
    let plen = u16::from_be_bytes([frame[L3 + 4], frame[L3 + 5]]) as usize;
    let thl = (frame[L4 + 12] >> 4) as usize * 4;
    if L4 + plen != frame.len() || thl < 20 || thl > plen {
        return None;
    }
    let a = |o: usize| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&frame[o..o + 16]).expect("16 bytes"));
    let pseudo = checksum::pseudo_header_v6(a(L3 + 8), a(L3 + 24), 6, plen as u32);
    let p = checksum::fold(pseudo);
    frame[L4 + 16..L4 + 18].copy_from_slice(&p.to_be_bytes());
    Some((40, thl))
}

/// The header for a TCP super-frame softnet writes (Ethernet, then IPv4
/// or IPv6, then TCP), with its checksum field made the pseudo-header sum
/// ([`partial_tcp4`] / [`partial_tcp6`]), cut at `mss` payload bytes; or,
/// when its payload fits one segment after all, the plain header with
/// `NEEDS_CSUM`. None if the frame is neither family's TCP packet.
pub fn tcp_tx_header(frame: &mut [u8], mss: usize) -> Option<VnetHdr> {
    let (v6, (iph, tcph)) = match frame.get(12..14)? {
        [0x08, 0x00] => (false, partial_tcp4(frame)?),
        [0x86, 0xdd] => (true, partial_tcp6(frame)?),
        _ => return None,
    };
    let eth_ip = 14 + iph;
    Some(match frame.len() - (eth_ip + tcph) > mss {
        true if v6 => VnetHdr::tcp6_train(eth_ip, tcph, mss as u16),
        true => VnetHdr::tcp4_train(eth_ip, tcph, mss as u16),
        false => VnetHdr { flags: F_NEEDS_CSUM, csum_start: eth_ip as u16, csum_offset: 16, ..VnetHdr::PLAIN },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_in_the_host_order() {
        let h = VnetHdr::tcp4_train(34, 32, 1448);
        let mut b = [0u8; VNET_HDR_LEN];
        h.encode(&mut b);
        assert_eq!(b, [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
        assert_eq!(VnetHdr::decode(&b), Ok(h));
        assert_eq!(VnetHdr::decode(&b[..9]), Err(VnetError::Short));
        let mut z = [0xffu8; VNET_HDR_LEN];
        VnetHdr::PLAIN.encode(&mut z);
        assert_eq!(z, [0; VNET_HDR_LEN]);
    }

    #[test]
    fn bad_headers_are_refused_with_their_reason() {
        let ok = VnetHdr::tcp4_train(34, 20, 1460);
        assert_eq!(ok.check(3000), Ok(()));
        assert_eq!(VnetHdr::PLAIN.check(60), Ok(()));
        let cases = [
            (VnetHdr { gso_type: 2, ..ok }, VnetError::BadGsoType(2)),
            (VnetHdr { gso_type: GSO_UDP, ..ok }, VnetError::BadGsoType(GSO_UDP)),
            (VnetHdr { gso_type: GSO_UDP_L4, ..ok }, VnetError::BadGsoType(GSO_UDP_L4)),
            (VnetHdr { gso_type: GSO_ECN, ..VnetHdr::PLAIN }, VnetError::BadGsoType(GSO_ECN)),
            (VnetHdr { flags: 4, ..ok }, VnetError::BadGsoType(4)),
            (VnetHdr { gso_size: 0, ..ok }, VnetError::ZeroGsoSize),
            (VnetHdr { gso_size: 1, ..ok }, VnetError::SmallGsoSize(1)),
            (VnetHdr { gso_size: 47, ..ok }, VnetError::SmallGsoSize(47)),
            (VnetHdr { hdr_len: 3001, ..ok }, VnetError::HdrLen { hdr_len: 3001, frame: 3000 }),
            (VnetHdr { hdr_len: 20, ..ok }, VnetError::HdrLen { hdr_len: 20, frame: 3000 }),
            (VnetHdr { csum_start: 2990, ..ok }, VnetError::CsumOutside { start: 2990, offset: 16, frame: 3000 }),
            (VnetHdr { csum_offset: 2999, ..ok }, VnetError::CsumOutside { start: 34, offset: 2999, frame: 3000 }),
            (VnetHdr { flags: 0, ..ok }, VnetError::GsoWithoutCsum),
        ];
        for (h, want) in cases {
            assert_eq!(h.check(3000), Err(want), "{h:?}");
        }
        // ECN on a TCP train is fine; the checksum field's last byte may
        // be the frame's last.
        assert_eq!(VnetHdr { gso_type: GSO_TCPV4 | GSO_ECN, ..ok }.check(3000), Ok(()));
        let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHdr::PLAIN };
        assert_eq!(h.check(52), Ok(()));
        assert!(h.check(51).is_err());
    }

    /// A TCP/IPv4 frame with a correct checksum (the wire crate's).
    pub(crate) fn tcp4_frame(payload: usize) -> Vec<u8> {
        use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
        let (s, d) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12] = 0x08;
        let ip = softnet_wire::ipv4::Ipv4Repr {
            src: s,
            dst: d,
            protocol: softnet_wire::ipv4::IpProtocol::TCP,
            ttl: 64,
            tos: 0,
            ident: 7,
            dont_frag: true,
            payload_len: 20 + payload,
        };
        ip.emit(&mut f[14..34]);
        let t = TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq: 100,
            ack: 5,
            flags: TcpFlags::ACK,
            window: 100,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: payload,
        };
        t.emit(&mut f[34..]);
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        TcpPacket::new_unchecked(&mut f[34..]).fill_checksum(s, d);
        f
    }

    /// A TCP/IPv6 frame with a correct checksum (the wire crate's).
    pub(crate) fn tcp6_frame(payload: usize) -> Vec<u8> {
        use softnet_wire::tcp::TcpPacket;
        let (s, d) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let mut f = tcp4_frame(payload);
        let tcp = f[34..].to_vec();
        f.truncate(14);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f.resize(54, 0);
        softnet_wire::ipv6::Ipv6Repr {
            src: s,
            dst: d,
            next_header: softnet_wire::ipv4::IpProtocol::TCP,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: tcp.len(),
        }
        .emit(&mut f[14..54]);
        f.extend_from_slice(&tcp);
        TcpPacket::new_unchecked(&mut f[54..]).fill_checksum_v6(s, d);
        f
    }

    #[test]
    fn an_ipv6_partial_checksum_completed_is_the_full_one() {
        let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 54, csum_offset: 16, ..VnetHdr::PLAIN };
        for len in [0, 1, 100, 1440, 9001, 65_000] {
            let good = tcp6_frame(len);
            let mut f = good.clone();
            assert_eq!(partial_tcp6(&mut f), Some((40, 20)));
            assert_ne!(f[70..72], good[70..72], "{len}: the field holds the pseudo-header sum");
            assert_eq!(h.check(f.len()), Ok(()));
            complete_csum(&mut f, &h);
            assert_eq!(f, good, "{len}");
        }
        // Not a TCP/IPv6 packet this writes: an extension header, UDP, a
        // payload length that disagrees with the frame, a header cut, IPv4.
        let mut ext = tcp6_frame(10);
        ext[14 + 6] = 0;
        let mut udp = tcp6_frame(10);
        udp[14 + 6] = 17;
        let mut long = tcp6_frame(10);
        long[18..20].copy_from_slice(&100u16.to_be_bytes());
        let mut short = tcp6_frame(0);
        short.truncate(60);
        let mut thl = tcp6_frame(0);
        thl[54 + 12] = 0x60; // a TCP header of 24 bytes in 20
        let mut v4 = tcp4_frame(10);
        for f in [&mut ext, &mut udp, &mut long, &mut short, &mut thl, &mut v4] {
            let before = f.clone();
            assert_eq!(partial_tcp6(f), None);
            assert_eq!(*f, before, "left as it was");
        }
    }

    #[test]
    fn a_super_segment_gets_its_family_s_train_header() {
        let mut f6 = tcp6_frame(10_000);
        let h = tcp_tx_header(&mut f6, 1428).unwrap();
        assert_eq!(h, VnetHdr::tcp6_train(54, 20, 1428));
        assert_eq!((h.gso_type, h.hdr_len, h.csum_start, h.csum_offset), (GSO_TCPV6, 74, 54, 16));
        assert_eq!(h.check(f6.len()), Ok(()));
        complete_csum(&mut f6, &h);
        assert_eq!(f6, tcp6_frame(10_000));
        let mut f4 = tcp4_frame(10_000);
        assert_eq!(tcp_tx_header(&mut f4, 1448), Some(VnetHdr::tcp4_train(34, 20, 1448)));
        // One segment's worth: the plain header, the checksum the device's.
        let mut one = tcp6_frame(1428);
        let h = tcp_tx_header(&mut one, 1428).unwrap();
        assert_eq!((h.gso_type, h.flags, h.csum_start), (GSO_NONE, F_NEEDS_CSUM, 54));
        complete_csum(&mut one, &h);
        assert_eq!(one, tcp6_frame(1428));
        // Neither family's TCP: no header.
        let mut arp = tcp4_frame(10);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(tcp_tx_header(&mut arp, 1448), None);
        assert_eq!(tcp_tx_header(&mut [0u8; 10], 1448), None);
    }

    #[test]
    fn a_partial_checksum_completed_is_the_full_one() {
        for len in [0, 1, 100, 1460, 9001] {
            let good = tcp4_frame(len);
            let mut f = good.clone();
            assert_eq!(partial_tcp4(&mut f), Some((20, 20)));
            assert_ne!(f[50..52], good[50..52], "{len}: the field holds the pseudo-header sum");
            let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHdr::PLAIN };
            assert_eq!(h.check(f.len()), Ok(()));
            complete_csum(&mut f, &h);
            assert_eq!(f, good, "{len}");
        }
        let mut udp = tcp4_frame(10);
        udp[14 + 9] = 17;
        assert_eq!(partial_tcp4(&mut udp), None);
        let mut frag = tcp4_frame(10);
        frag[14 + 6] |= 0x20;
        assert_eq!(partial_tcp4(&mut frag), None);
        let mut short = tcp4_frame(10);
        short.pop();
        assert_eq!(partial_tcp4(&mut short), None);
    }
}
