//! TCP segmentation in software (Linux's tcp_gso_segment over
//! skb_segment): a TCP super-segment, one header over up to 64 KB of
//! payload (what the engine hands a device with segmentation offload,
//! `Tcb::output_tso`, or what a TAP with offloads hands softnet), cut into
//! segments of `mss` payload bytes, each a whole packet with its own
//! header: the IP total length (IPv4: its identification advanced per
//! segment and its header checksum) or payload length (IPv6), the
//! sequence number advanced, FIN and PSH only on the last segment, CWR
//! only on the first, and each segment's TCP checksum computed in full.
//!
//! The stack uses it when a super-segment cannot leave whole (its route
//! or a pf route-to sends it through a device without the offload); the
//! TAP when a frame it reads is one.

use crate::packet::PacketBuf;
use softnet_wire::checksum;

/// Why a super-segment could not be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoError {
    /// Not IPv4 or IPv6 with TCP right after the fixed header, or a
    /// fragment.
    NotTcp,
    /// A header longer than the packet, or lengths that disagree with it.
    BadHeader,
    /// `mss` 0.
    ZeroMss,
    /// No buffer for a segment (the segments before it were handed on).
    NoBuffer,
}

/// Where the headers of a TCP packet are: `l3` (after `l3` bytes of
/// link header), the IP header length, the TCP header length and the
/// packet's end. Checked against the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLayout {
    pub l3: usize,
    pub v6: bool,
    pub iph: usize,
    pub tcph: usize,
    pub end: usize,
}

impl TcpLayout {
    /// The layout of the TCP packet at `f[l3..]` (the IP header's length
    /// field decides the end; bytes after it are padding and ignored).
    pub fn parse(f: &[u8], l3: usize) -> Result<TcpLayout, GsoError> {
        let be16 = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]) as usize;
        if f.len() < l3 + 20 {
            return Err(GsoError::BadHeader);
        }
        let (v6, iph, end) = match f[l3] >> 4 {
            4 => {
                let ihl = (f[l3] & 0x0f) as usize * 4;
                if ihl < 20 || f[l3 + 9] != 6 {
                    return Err(GsoError::NotTcp);
                }
                if be16(l3 + 6) & 0x3fff != 0 {
                    return Err(GsoError::NotTcp);
                }
                (false, ihl, l3 + be16(l3 + 2))
            }
            6 => {
                if f.len() < l3 + 40 {
                    return Err(GsoError::BadHeader);
                }
                if f[l3 + 6] != 6 {
                    return Err(GsoError::NotTcp);
                }
                (true, 40, l3 + 40 + be16(l3 + 4))
            }
            _ => return Err(GsoError::NotTcp),
        };
        let l4 = l3 + iph;
        if end > f.len() || l4 + 20 > end {
            return Err(GsoError::BadHeader);
        }
        let tcph = (f[l4 + 12] >> 4) as usize * 4;
        if tcph < 20 || l4 + tcph > end {
            return Err(GsoError::BadHeader);
        }
        Ok(TcpLayout { l3, v6, iph, tcph, end })
    }

    /// Bytes of headers (link, IP, TCP).
    pub fn hdr_len(&self) -> usize {
        self.l3 + self.iph + self.tcph
    }

    /// TCP payload bytes.
    pub fn payload_len(&self) -> usize {
        self.end - self.hdr_len()
    }
}

/// Cuts the TCP packet at `f[l3..]` into segments of at most `mss`
/// payload bytes, each written into a buffer from `alloc` (the first `l3`
/// bytes, the link header, copied in front of each) and handed to `out`.
/// A packet with no more than `mss` bytes of payload comes out as one
/// segment, its checksum computed. Returns the number of segments.
pub fn segment_tcp(
    f: &[u8],
    l3: usize,
    mss: usize,
    mut alloc: impl FnMut() -> Option<PacketBuf>,
    mut out: impl FnMut(PacketBuf),
) -> Result<usize, GsoError> {
    if mss == 0 {
        return Err(GsoError::ZeroMss);
    }
    let lay = TcpLayout::parse(f, l3)?;
    let hl = lay.hdr_len();
    let l4 = l3 + lay.iph;
    let payload = &f[hl..lay.end];
    let n = payload.len().div_ceil(mss).max(1);
    let seq0 = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
    let flags0 = f[l4 + 13];
    let id0 = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]);
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let Some(mut p) = alloc() else { return Err(GsoError::NoBuffer) };
        if p.rewind(hl + chunk.len()).is_err() {
            return Err(GsoError::NoBuffer);
        }
        let b = p.data_mut();
        b[..hl].copy_from_slice(&f[..hl]);
        b[hl..].copy_from_slice(chunk);
        let tcp_len = lay.tcph + chunk.len();
        if lay.v6 {
            b[l3 + 4..l3 + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        } else {
            b[l3 + 2..l3 + 4].copy_from_slice(&((lay.iph + tcp_len) as u16).to_be_bytes());
            b[l3 + 4..l3 + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            b[l3 + 10..l3 + 12].fill(0);
            let c = checksum::checksum(&b[l3..l4]);
            b[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        let seq = seq0.wrapping_add((i * mss) as u32);
        b[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < n {
            flags &= !(0x01 | 0x08); // FIN, PSH: the last segment's
        }
        if i > 0 {
            flags &= !0x80; // CWR: the first's
        }
        b[l4 + 13] = flags;
        b[l4 + 16..l4 + 18].fill(0);
        let pseudo = if lay.v6 {
            checksum::combine(checksum::sum(&b[l3 + 8..l3 + 40]), tcp_len as u32 + 6)
        } else {
            let a = |o: usize| std::net::Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
            checksum::pseudo_header_v4(a(l3 + 12), a(l3 + 16), 6, tcp_len as u16)
        };
        let c = checksum::finish(checksum::combine(pseudo, checksum::sum(&b[l4..])));
        b[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        p.meta.l3_off = l3 as u16;
        out(p);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
    use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
    use std::net::Ipv4Addr;

    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const D: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// An IPv4 TCP packet with timestamps, `len` payload bytes of a
    /// pattern, its checksum 0 (a super-segment's is never computed).
    fn super_segment(len: usize, flags: TcpFlags) -> Vec<u8> {
        let t = TcpRepr {
            src_port: 5001,
            dst_port: 40000,
            seq: 0xffff_f000,
            ack: 77,
            flags,
            window: 512,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: Some((1, 2)),
            payload_len: len,
        };
        let th = t.header_len();
        let mut f = vec![0u8; 20 + th + len];
        let ip = Ipv4Repr {
            src: S,
            dst: D,
            protocol: IpProtocol::TCP,
            ttl: 64,
            tos: 0,
            ident: 0xfffe,
            dont_frag: true,
            payload_len: th + len,
        };
        ip.emit(&mut f[..20]);
        t.emit(&mut f[20..]);
        for (i, b) in f[20 + th..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        f
    }

    fn cut(f: &[u8], mss: usize) -> Result<Vec<PacketBuf>, GsoError> {
        let mut v = Vec::new();
        segment_tcp(f, 0, mss, || Some(PacketBuf::with_capacity(4096)), |p| v.push(p))?;
        Ok(v)
    }

    #[test]
    fn a_super_segment_is_cut_into_valid_segments_of_the_mss() {
        let f = super_segment(60_000, TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN | TcpFlags::CWR);
        let segs = cut(&f, 1448).unwrap();
        assert_eq!(segs.len(), 60_000usize.div_ceil(1448));
        let mut stream = Vec::new();
        for (i, p) in segs.iter().enumerate() {
            let ip = Ipv4Packet::new_checked(p.data()).unwrap();
            assert!(ip.verify_checksum(), "IP header checksum of segment {i}");
            assert_eq!(ip.total_len() as usize, p.len());
            assert_eq!(ip.ident(), 0xfffeu16.wrapping_add(i as u16));
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.verify_checksum(S, D), "TCP checksum of segment {i}");
            assert_eq!(t.seq(), 0xffff_f000u32.wrapping_add((i * 1448) as u32));
            let last = i + 1 == segs.len();
            assert_eq!(t.payload().len(), if last { 60_000 - 1448 * i } else { 1448 });
            assert_eq!(t.flags().contains(TcpFlags::FIN), last);
            assert_eq!(t.flags().contains(TcpFlags::PSH), last);
            assert_eq!(t.flags().contains(TcpFlags::CWR), i == 0);
            assert!(t.flags().contains(TcpFlags::ACK));
            assert_eq!(TcpRepr::parse(&t).unwrap().timestamp, Some((1, 2)));
            stream.extend_from_slice(t.payload());
        }
        assert_eq!(stream, f[f.len() - 60_000..], "the byte stream is the super-segment's");
    }

    #[test]
    fn a_short_packet_comes_out_whole_with_its_checksum() {
        let f = super_segment(100, TcpFlags::ACK);
        let segs = cut(&f, 1448).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].data()[..16], f[..16]);
        let ip = Ipv4Packet::new_checked(segs[0].data()).unwrap();
        assert!(TcpPacket::new_checked(ip.payload()).unwrap().verify_checksum(S, D));
        let bare = super_segment(0, TcpFlags::ACK);
        assert_eq!(cut(&bare, 1448).unwrap().len(), 1);
    }

    #[test]
    fn bad_packets_and_limits_are_refused() {
        let f = super_segment(3000, TcpFlags::ACK);
        assert_eq!(cut(&f, 0).err(), Some(GsoError::ZeroMss));
        let mut udp = f.clone();
        udp[9] = 17;
        assert_eq!(cut(&udp, 1448).err(), Some(GsoError::NotTcp));
        let mut frag = f.clone();
        frag[6] = 0x20; // MF
        assert_eq!(cut(&frag, 1448).err(), Some(GsoError::NotTcp));
        let mut long = f.clone();
        long[2..4].copy_from_slice(&(f.len() as u16 + 1).to_be_bytes());
        assert_eq!(cut(&long, 1448).err(), Some(GsoError::BadHeader));
        let mut thl = f.clone();
        thl[32] = 0x10; // a TCP header of 4 bytes
        assert_eq!(cut(&thl, 1448).err(), Some(GsoError::BadHeader));
        assert_eq!(cut(&f[..30], 1448).err(), Some(GsoError::BadHeader));
        assert_eq!(cut(&[0x50; 40], 1448).err(), Some(GsoError::NotTcp));
        // Buffers run out after the second: two handed on, then the error.
        let mut given = 0;
        let mut v = Vec::new();
        let r = segment_tcp(
            &f,
            0,
            1000,
            || {
                given += 1;
                (given <= 2).then(|| PacketBuf::with_capacity(4096))
            },
            |p| v.push(p),
        );
        assert_eq!((r, v.len()), (Err(GsoError::NoBuffer), 2));
        // A buffer too small for a segment is the same.
        let r = segment_tcp(&f, 0, 1448, || Some(PacketBuf::with_capacity(256)), |_| {});
        assert_eq!(r, Err(GsoError::NoBuffer));
    }

    #[test]
    fn an_ipv6_super_segment_is_cut_too() {
        let t = TcpRepr {
            payload_len: 5000,
            ..TcpRepr::parse(&TcpPacket::new_checked(&super_segment(0, TcpFlags::ACK)[20..]).unwrap()).unwrap()
        };
        let th = t.header_len();
        let mut f = vec![0u8; 40 + th + 5000];
        f[0] = 0x60;
        f[4..6].copy_from_slice(&((th + 5000) as u16).to_be_bytes());
        f[6] = 6;
        f[7] = 64;
        f[8] = 0xfd;
        f[24] = 0xfd;
        f[39] = 2;
        t.emit(&mut f[40..]);
        let segs = cut(&f, 1400).unwrap();
        assert_eq!(segs.len(), 4);
        let (s6, d6) = (
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&f[8..24]).unwrap()),
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&f[24..40]).unwrap()),
        );
        for p in &segs {
            let d = p.data();
            assert_eq!(u16::from_be_bytes([d[4], d[5]]) as usize, d.len() - 40);
            assert!(TcpPacket::new_checked(&d[40..]).unwrap().verify_checksum_v6(s6, d6));
        }
    }
}
