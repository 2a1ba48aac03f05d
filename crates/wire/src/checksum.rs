//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A *partial sum* (`u32`, from [`sum`], [`pseudo_header_v4`],
//! [`pseudo_header_v6`], [`combine`])
//! is the ones-complement sum of 16-bit big-endian words, folded to at most
//! `0xFFFF`. Partial sums of pieces add up with [`combine`] as long as every
//! piece but the last has even length. [`finish`] turns a partial sum into
//! the checksum field value.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a sum with end-around carries down to 16 bits.
///
/// Accepts `u16`, `u32` or `u64`. A non-zero input never folds to zero, so
/// "negative zero" (`0xFFFF`) is preserved.
#[inline]
pub fn fold<S: Into<u64>>(s: S) -> u16 {
    let mut s: u64 = s.into();
    while s > 0xFFFF {
        s = (s >> 16) + (s & 0xFFFF);
    }
    s as u16
}

/// Partial ones-complement sum of `data` as big-endian 16-bit words (an odd
/// last byte is padded with zero), folded to 16 bits.
///
/// Sums 8 bytes at a time in native byte order into `u64`s with end-around
/// carry; the ones-complement sum commutes with byte swapping (RFC 1071 §2),
/// so one swap at the end gives the big-endian result. Blocks of 32 bytes
/// go into four independent sums, added together at the end (RFC 1071
/// §2(B): the sum is associative): one add-with-carry chain is bound by its
/// latency, four run side by side, the same instructions in about half the
/// time over a full-sized segment (each segment received is summed whole,
/// offloads off).
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let word = |c: &[u8]| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        lanes[0] = add_carry(lanes[0], word(&b[0..8]));
        lanes[1] = add_carry(lanes[1], word(&b[8..16]));
        lanes[2] = add_carry(lanes[2], word(&b[16..24]));
        lanes[3] = add_carry(lanes[3], word(&b[24..32]));
    }
    let mut acc = add_carry(add_carry(lanes[0], lanes[1]), add_carry(lanes[2], lanes[3]));
    let mut chunks = blocks.remainder().chunks_exact(8);
    for c in &mut chunks {
        acc = add_carry(acc, word(c));
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        acc = add_carry(acc, u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64);
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc = add_carry(acc, u16::from_ne_bytes([rest[0], rest[1]]) as u64);
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc = add_carry(acc, u16::from_ne_bytes([*last, 0]) as u64);
    }
    // Native-order words folded; convert the 16-bit result to big-endian
    // meaning (a no-op on big-endian hosts).
    u16::from_be(fold(acc)) as u32
}

#[inline]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + carry as u64
}

/// Adds two partial sums.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    fold(a as u64 + b as u64) as u32
}

/// The checksum field value for a partial sum: its ones complement.
#[inline]
pub fn finish(partial: u32) -> u16 {
    !fold(partial)
}

/// The Internet checksum of `data`: the ones complement of the ones-complement
/// sum. Over a header that contains a correct checksum field it is 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Partial sum of the IPv4 pseudo-header used by TCP and UDP (RFC 793 §3.1,
/// RFC 768): source, destination, zero + protocol, transport length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let words = u16::from_be_bytes([s[0], s[1]]) as u64
        + u16::from_be_bytes([s[2], s[3]]) as u64
        + u16::from_be_bytes([d[0], d[1]]) as u64
        + u16::from_be_bytes([d[2], d[3]]) as u64
        + proto as u64
        + len as u64;
    fold(words) as u32
}

/// Partial sum of the IPv6 pseudo-header used by TCP, UDP and ICMPv6 (RFC
/// 8200 §8.1): source, destination, 32-bit upper-layer packet length, three
/// zero bytes and the next header. `next_header` is the upper-layer protocol
/// (not the value in the IPv6 header when extension headers sit between),
/// and `dst` the final destination when a routing header is present.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut words: u64 = 0;
    for a in [src.octets(), dst.octets()] {
        for w in a.chunks_exact(2) {
            words += u16::from_be_bytes([w[0], w[1]]) as u64;
        }
    }
    words += (len >> 16) as u64 + (len & 0xFFFF) as u64 + next_header as u64;
    fold(words) as u32
}

/// [`update16`] for a 128-bit field (an IPv6 address, e.g. rewritten by NAT)
/// at an even offset: eight word updates.
#[inline]
pub fn update128(old_csum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    let (o, n) = (old.segments(), new.segments());
    let mut s = !old_csum as u64;
    for i in 0..8 {
        s += !o[i] as u64 + n[i] as u64;
    }
    !fold(s)
}

/// RFC 1624 eqn. 3: the new checksum field after a 16-bit word of the covered
/// data changes from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update16(old_csum: u16, old: u16, new: u16) -> u16 {
    !fold(!old_csum as u32 + !old as u32 + new as u32)
}

/// [`update16`] for a 32-bit field (e.g. an IPv4 address or a TCP sequence
/// number) at an even offset.
#[inline]
pub fn update32(old_csum: u16, old: u32, new: u32) -> u16 {
    let s = !old_csum as u64
        + !(old >> 16) as u16 as u64
        + !(old as u16) as u64
        + (new >> 16) as u64
        + (new & 0xFFFF) as u64;
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 done the obvious way, as the reference.
    fn naive_sum(data: &[u8]) -> u32 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = data[i] as u32;
            let lo = if i + 1 < data.len() { data[i + 1] as u32 } else { 0 };
            s += (hi << 8) | lo;
            s = (s & 0xFFFF) + (s >> 16);
            i += 2;
        }
        s
    }

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    /// All-ones words carry out of every lane on every add: the four
    /// lanes' sums and their merge keep every end-around carry.
    #[test]
    fn carries_out_of_every_lane_are_kept() {
        for len in [0usize, 1, 7, 31, 32, 33, 64, 95, 1480, 1500] {
            let ff = vec![0xFFu8; len];
            let naive = naive_sum(&ff);
            assert_eq!(sum(&ff), naive, "len {len}");
        }
    }

    #[test]
    fn empty_and_zero_data_sum_to_zero() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xFFFF);
        assert_eq!(sum(&[0; 37]), 0);
    }

    #[test]
    fn odd_length_pads_last_byte_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        // A real header (Wikipedia's IPv4 checksum example): b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn rfc1624_example_eqn3_gives_0000_not_ffff() {
        // RFC 1624 §4: sum of other octets 0xCD7A, m = 0x5555 -> m' = 0x3285.
        let hc = !fold(0xCD7Au32 + 0x5555);
        assert_eq!(hc, 0xDD2F);
        // Recomputing from scratch gives ~0xFFFF = 0x0000 ...
        assert_eq!(!fold(0xCD7Au32 + 0x3285), 0x0000);
        // ... and so must the incremental update (eqn. 2 would give 0xFFFF).
        assert_eq!(update16(0xDD2F, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn update32_matches_two_update16() {
        let c = 0x1234;
        let (old, new) = (0xc0a80001u32, 0x0a000001u32);
        let two = update16(update16(c, (old >> 16) as u16, (new >> 16) as u16), old as u16, new as u16);
        assert_eq!(update32(c, old, new), two);
    }

    #[test]
    fn pseudo_header_matches_summing_the_bytes() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 200, 254);
        let mut ph = [0u8; 12];
        ph[0..4].copy_from_slice(&src.octets());
        ph[4..8].copy_from_slice(&dst.octets());
        ph[9] = 17;
        ph[10..12].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(pseudo_header_v4(src, dst, 17, 1234), sum(&ph));
    }

    #[test]
    fn pseudo_header_v6_matches_summing_the_bytes() {
        let src: Ipv6Addr = "fe80::1:2ff:fe00:1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        let mut ph = [0u8; 40];
        ph[0..16].copy_from_slice(&src.octets());
        ph[16..32].copy_from_slice(&dst.octets());
        ph[32..36].copy_from_slice(&0x0001_2345u32.to_be_bytes());
        ph[39] = 58;
        assert_eq!(pseudo_header_v6(src, dst, 58, 0x0001_2345), sum(&ph));
    }

    proptest! {
        #[test]
        fn pseudo_header_v6_equals_byte_sum(s in any::<u128>(), d in any::<u128>(), nh in any::<u8>(), len in any::<u32>()) {
            let (src, dst) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let mut ph = [0u8; 40];
            ph[0..16].copy_from_slice(&src.octets());
            ph[16..32].copy_from_slice(&dst.octets());
            ph[32..36].copy_from_slice(&len.to_be_bytes());
            ph[39] = nh;
            prop_assert_eq!(pseudo_header_v6(src, dst, nh, len), sum(&ph));
        }

        #[test]
        fn update128_verifies(mut data in proptest::collection::vec(any::<u8>(), 18..80), new in any::<u128>()) {
            let len = data.len() & !1;
            data.truncate(len);
            data[0] = 0;
            data[1] = 0;
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            let old = Ipv6Addr::from(<[u8; 16]>::try_from(&data[2..18]).unwrap());
            let new = Ipv6Addr::from(new);
            data[2..18].copy_from_slice(&new.octets());
            prop_assume!(data[2..].iter().any(|&b| b != 0));
            let upd = update128(c, old, new);
            data[0..2].copy_from_slice(&upd.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);
        }

        #[test]
        fn fast_sum_equals_naive(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(sum(&data), naive_sum(&data));
        }

        #[test]
        fn sum_of_unaligned_slices_equals_naive(data in proptest::collection::vec(any::<u8>(), 1..300), off in 0usize..8) {
            let off = off.min(data.len());
            prop_assert_eq!(sum(&data[off..]), naive_sum(&data[off..]));
        }

        #[test]
        fn combine_of_even_pieces_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..300) {
            let cut = (cut * 2).min(data.len() & !1);
            prop_assert_eq!(combine(sum(&data[..cut]), sum(&data[cut..])), sum(&data));
        }

        #[test]
        fn update16_equals_recompute(mut data in proptest::collection::vec(any::<u8>(), 4..200), idx in 0usize..100, new in any::<u16>()) {
            let len = data.len() & !1;
            data.truncate(len);
            // Field 0..2 holds the checksum; change another even-aligned word.
            data[0] = 0;
            data[1] = 0;
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            let w = 2 + (idx * 2) % (len - 2).max(2);
            prop_assume!(w + 2 <= len);
            let old = u16::from_be_bytes([data[w], data[w + 1]]);
            data[w..w + 2].copy_from_slice(&new.to_be_bytes());
            // All-zero data is the one case where eqn. 3 (0x0000) and a
            // recompute (0xFFFF) differ; no real header is all zero.
            prop_assume!(data[2..].iter().any(|&b| b != 0));
            let upd = update16(c, old, new);
            data[0..2].copy_from_slice(&upd.to_be_bytes());
            // The updated header verifies.
            prop_assert_eq!(checksum(&data), 0);
        }

        #[test]
        fn update32_verifies(mut data in proptest::collection::vec(any::<u8>(), 8..100), new in any::<u32>()) {
            let len = data.len() & !3;
            data.truncate(len);
            data[0] = 0;
            data[1] = 0;
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            let old = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            data[4..8].copy_from_slice(&new.to_be_bytes());
            prop_assume!(data[2..].iter().any(|&b| b != 0));
            let upd = update32(c, old, new);
            data[0..2].copy_from_slice(&upd.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);
        }
    }
}
