//! The established IPv6 UDP datagram of the common case, decided from its
//! key words as IPv4's is (`fast4`): IPv6's batch loop (`batch::chunk6`)
//! reads the fixed header and the UDP header straight to the in hook's
//! key words (the addresses' ids through the chunk's memo on the in hook,
//! from pf in's note on the out hook) and the datagram's length, and a
//! plain state on the fast path decides the packet from those alone. No
//! packet description is built or read back for it.

use super::*;
use crate::state::v6ids::{Memo, NO_ID};
use crate::state::KEY_INET6;

/// What the batch's first pass keeps of an IPv6 UDP datagram `parse_fast6`
/// takes: its addresses as the header has them (16 bytes each: the memo,
/// the note and pf out's check compare them as they are, and only an
/// address the memo does not know is turned into a `pf_addr` value for
/// its id), its ports (source in the high half) and its length (fixed
/// header and payload).
#[derive(Clone, Copy)]
pub struct Udp6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ports: u32,
    pub len: u16,
}

/// `parse_fast6`'s checks for a UDP datagram, read straight off the
/// headers: the fixed header straight followed by UDP, the payload
/// length within the frame, a UDP length of at least its header and
/// within the payload, a destination port other than 0. `None` for
/// anything else (TCP too), which then takes `parse_fast6` or the full
/// parse: both give the same verdict for every packet this takes.
#[inline(always)]
pub fn fast_udp6(d: &[u8]) -> Option<Udp6> {
    // The fixed header and the UDP header, read at fixed offsets with no
    // further bounds check. A shorter frame fails the checks below anyway
    // (its total length would be under 48 or past its end).
    let h: &[u8; 48] = d.first_chunk()?;
    if h[0] >> 4 != 6 || h[6] != PROTO_UDP {
        return None;
    }
    let tot = 40 + be16(h, 4) as usize;
    if tot > d.len() || tot < 40 + softnet_wire::udp::HEADER_LEN {
        return None;
    }
    let ulen = be16(h, 44) as usize;
    let ports = be32(h, 40);
    // pf_setup_pdesc: to port 0 is short; the full path drops it.
    if ulen > tot - 40 || ulen < softnet_wire::udp::HEADER_LEN || ports & 0xffff == 0 {
        return None;
    }
    let addr = |at: usize| -> [u8; 16] { *h[at..].first_chunk().expect("within the 48 bytes") };
    Some(Udp6 { src: addr(8), dst: addr(24), ports, len: tot as u16 })
}

/// The second key word of an IPv6 UDP datagram with ports `ports`, as the
/// in hook sees it (`pkt_key_words6`).
#[inline(always)]
fn udp6_word(ports: u32) -> u64 {
    (ports as u64) << 32 | (PROTO_UDP as u64) << 16 | KEY_INET6
}

/// The in hook's key words of `u` (`in_key_words6_memo` for a datagram
/// `fast_udp6` took): the addresses' ids through the chunk's `memo`,
/// noted in the packet with the addresses when both have one
/// (`PacketData::pf_note6`), else the note cleared.
#[inline(always)]
pub fn in_words6(u: &Udp6, pkt: &mut PacketBuf, memo: &mut Memo) -> (u64, u64) {
    let (s, d) = (memo.lookup_octets(0, &u.src), memo.lookup_octets(1, &u.dst));
    let ids = (s as u64) << 32 | d as u64;
    if s != NO_ID && d != NO_ID {
        pkt.pf_note6 = PfNote6 { src: u.src, dst: u.dst, ids };
        pkt.meta.flags |= mflags::PF_NOTE6;
    } else {
        pkt.meta.flags &= !mflags::PF_NOTE6;
    }
    (ids, udp6_word(u.ports))
}

/// The in hook's key words of `u` from the ids pf in noted in the packet
/// (`noted_key_words6`), when its addresses are still the noted ones;
/// `None` otherwise (then the description's way, `linked_key_words6`).
#[inline(always)]
pub fn noted_words6(u: &Udp6, pkt: &PacketBuf) -> Option<(u64, u64)> {
    let n = &pkt.pf_note6;
    if pkt.meta.flags & mflags::PF_NOTE6 == 0 || n.src != u.src || n.dst != u.dst {
        return None;
    }
    Some((n.ids, udp6_word(u.ports)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::v6ids;

    fn frame(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[proto, 64]);
        p.extend_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(l4);
        p
    }

    /// `fast_udp6` takes exactly the UDP datagrams `parse_fast6` takes,
    /// with its addresses, ports and length: valid datagrams (and a TCP
    /// segment, an extension header, Ethernet padding) and every one-byte
    /// corruption of them, whole and cut short.
    #[test]
    fn the_udp_words_parse_agrees_with_the_fast_description() {
        let udp = [0x13, 0x88, 0, 53, 0, 10, 0, 0, 0x61, 0x62];
        let tcp = [0x9c, 0x40, 0, 22, 0, 0, 3, 0xe9, 0, 0, 0x13, 0x89, 0x50, TH_ACK, 0x20, 0, 0, 0, 0, 0];
        let mut padded = frame("2001:db8::1", "2001:db8::2", PROTO_UDP, &udp);
        padded.extend_from_slice(&[0; 6]);
        let mut hbh = frame("2001:db8::1", "2001:db8::2", 0, &[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
        hbh.extend_from_slice(&udp);
        hbh[5] += udp.len() as u8;
        let packets = [
            frame("2001:db8::1", "2001:db8::2", PROTO_UDP, &udp),
            frame("2001:db8::1", "2001:db8::2", PROTO_TCP, &tcp),
            padded,
            hbh,
        ];
        let mut all: Vec<Vec<u8>> = packets.to_vec();
        for p in &packets {
            for i in 0..p.len() {
                for v in [0u8, 1, 7, 8, 9, 0x0a, 0x11, 0x40, 0x50, 0x60, 0x6f, 0x80, 0xff] {
                    let mut q = p.clone();
                    q[i] = v;
                    all.push(q.clone());
                    q.truncate(q.len() - 3);
                    all.push(q);
                }
            }
        }
        let mut taken = 0;
        for p in &all {
            let want = parse_fast6(p)
                .filter(|pd| pd.proto == PROTO_UDP)
                .map(|pd| (pd.src, pd.dst, (pd.sport as u32) << 16 | pd.dport as u32, pd.tot_len() as u16));
            let pf_addr = |a: [u8; 16]| PfAddr::from_v6(a.into());
            let got = fast_udp6(p).map(|u| (pf_addr(u.src), pf_addr(u.dst), u.ports, u.len));
            assert_eq!(got, want, "{p:?}");
            taken += got.is_some() as usize;
        }
        assert!(taken > 100, "{taken}");
    }

    /// The words of a datagram `fast_udp6` took are the description's:
    /// the in hook's (`in_key_words6_memo`, the same note left in the
    /// packet, or none without ids) and pf out's from the note
    /// (`noted_key_words6`, refused for other addresses).
    #[test]
    fn the_udp_words_are_the_descriptions_on_both_hooks() {
        let udp = [0x13, 0x88, 0, 53, 0, 10, 0, 0, 0x61, 0x62];
        let (a, b, c) = ("2001:db8:fffb::1", "2001:db8:fffb::2", "2001:db8:fffb::3");
        let f = frame(a, b, PROTO_UDP, &udp);
        let (u, pd) = (fast_udp6(&f).unwrap(), parse_fast6(&f).unwrap());
        let mut ids = vec![];
        for round in 0..2 {
            let (mut p, mut q) = (PacketBuf::from_slice(&f), Some(PacketBuf::from_slice(&f)));
            // A stale note from the buffer's last packet.
            p.meta.flags |= mflags::PF_NOTE6;
            q.as_mut().unwrap().meta.flags |= mflags::PF_NOTE6;
            let got = in_words6(&u, &mut p, &mut Memo::default());
            let want = in_key_words6_memo(&pd, &mut q, &mut Memo::default());
            let q = q.unwrap();
            assert_eq!(got, want, "round {round}");
            assert_eq!((p.meta.flags, p.pf_note6), (q.meta.flags, q.pf_note6), "round {round}");
            assert_eq!(p.meta.flags & mflags::PF_NOTE6 != 0, round == 1);
            assert_eq!(noted_words6(&u, &p), noted_key_words6(&pd, Direction::In, &p));
            if round == 1 {
                let out = noted_words6(&u, &p).map(|k| fast4::dir_words(k, Direction::Out));
                assert_eq!(out, noted_key_words6(&pd, Direction::Out, &p));
                assert!(out.is_some());
                // Another packet's addresses under the same note.
                for (s, d) in [(c, b), (a, c), (b, a)] {
                    let g = frame(s, d, PROTO_UDP, &udp);
                    let mut o = PacketBuf::from_slice(&g);
                    (o.meta.flags, o.pf_note6) = (p.meta.flags, p.pf_note6);
                    assert_eq!(noted_words6(&fast_udp6(&g).unwrap(), &o), None, "{s} -> {d}");
                }
            }
            if round == 0 {
                ids = vec![v6ids::acquire(pd.src), v6ids::acquire(pd.dst)];
            }
        }
        for id in ids {
            v6ids::release(id);
        }
    }
}
