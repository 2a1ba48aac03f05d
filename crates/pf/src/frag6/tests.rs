use super::*;
use softnet_core::refrag6::refragment6;
use std::sync::atomic::{AtomicU64, Ordering};

type Bufs = crate::frag::TestBufs;

const SRC: [u8; 16] = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST: [u8; 16] = [0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// The whole datagram: IPv6 header, `ext` (extension headers, chained
/// with next header 17 at the end), then `payload` (UDP, say).
fn datagram(ext: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 40];
    d[0] = 0x60;
    d[4..6].copy_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
    d[6] = if ext.is_empty() { 17 } else { 0 };
    d[7] = 64;
    d[8..24].copy_from_slice(&SRC);
    d[24..40].copy_from_slice(&DST);
    d.extend_from_slice(ext);
    d.extend_from_slice(payload);
    d
}

/// A hop-by-hop header (8 octets of padding) naming `next`.
fn hbh(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// The fragment of `whole` (no extension headers but `ext`) holding
/// payload octets `off..end`.
fn frag(whole: &[u8], ext_len: usize, id: u32, off: usize, end: usize, more: bool) -> PacketBuf {
    let h = 40 + ext_len;
    let (nh_at, next) = if ext_len == 0 { (6, whole[6]) } else { (40, whole[40]) };
    let mut f = whole[..h].to_vec();
    f[nh_at] = 44;
    let offlg = (off as u16) | u16::from(more);
    f.extend_from_slice(&[next, 0]);
    f.extend_from_slice(&offlg.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&whole[h + off..h + end]);
    let plen = (f.len() - 40) as u16;
    f[4..6].copy_from_slice(&plen.to_be_bytes());
    PacketBuf::from_slice(&f)
}

fn input(c: &FragCache6, p: PacketBuf, b: &mut Bufs) -> FragResult {
    let fh = find_frag_header(p.data()).unwrap().unwrap();
    c.input(p, fh, 1_000, 5000, 60, b)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn fragments_in_any_order_make_the_datagram_without_its_fragment_header() {
    let whole = datagram(&[], &payload(3000));
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let c = FragCache6::new();
        let mut b = Bufs::default();
        let parts = [(0, 1448, true), (1448, 2896, true), (2896, 3000, false)];
        let mut done = None;
        for (i, k) in order.iter().enumerate() {
            let (off, end, more) = parts[*k];
            match input(&c, frag(&whole, 0, 0x1234_5678, off, end, more), &mut b) {
                FragResult::Kept => assert!(i < 2),
                FragResult::Done(p) => done = Some(p),
                FragResult::Drop(_, why) => panic!("dropped: {why:?}"),
            }
        }
        let p = done.expect("complete");
        assert_eq!(p.data(), &whole[..], "order {order:?}");
        assert_eq!((p.meta.pf_frag_max, p.meta.flow_hash), (1448, 0x1234_5678));
        assert_eq!((c.len(), b.freed), (0, 3));
    }
}

#[test]
fn the_unfragmentable_part_is_kept_and_the_byte_naming_the_fragment_header_restored() {
    let whole = datagram(&hbh(17), &payload(100));
    let c = FragCache6::new();
    let mut b = Bufs::default();
    assert!(matches!(input(&c, frag(&whole, 8, 9, 56, 100, false), &mut b), FragResult::Kept));
    let FragResult::Done(p) = input(&c, frag(&whole, 8, 9, 0, 56, true), &mut b) else { panic!("not complete") };
    assert_eq!(p.data(), &whole[..]);
    assert_eq!(p.meta.pf_frag_max, 56);
}

#[test]
fn an_overlap_drops_the_whole_datagram_as_rfc_5722_says() {
    let whole = datagram(&[], &payload(200));
    let c = FragCache6::new();
    let mut b = Bufs::default();
    assert!(matches!(input(&c, frag(&whole, 0, 1, 0, 96, true), &mut b), FragResult::Kept));
    // Overlapping the held one's tail: both go.
    assert!(matches!(input(&c, frag(&whole, 0, 1, 88, 200, false), &mut b), FragResult::Drop(_, FragDrop::Bad)));
    assert_eq!((c.len(), b.freed), (0, 1));
    // A copy of one held (wholly inside it) drops the datagram too.
    assert!(matches!(input(&c, frag(&whole, 0, 2, 0, 96, true), &mut b), FragResult::Kept));
    assert!(matches!(input(&c, frag(&whole, 0, 2, 0, 96, true), &mut b), FragResult::Drop(_, FragDrop::Bad)));
    assert_eq!(c.len(), 0);
    // What comes later starts anew (pf keeps nothing of a freed one).
    assert!(matches!(input(&c, frag(&whole, 0, 2, 96, 200, false), &mut b), FragResult::Kept));
    assert_eq!(c.len(), 1);
}

#[test]
fn bad_fragments_are_refused_alone() {
    let whole = datagram(&[], &payload(200));
    let c = FragCache6::new();
    let mut b = Bufs::default();
    // Not a multiple of 8 with more to come.
    assert!(matches!(input(&c, frag(&whole, 0, 3, 0, 90, true), &mut b), FragResult::Drop(_, FragDrop::Bad)));
    // Past what a held last fragment says is the end.
    assert!(matches!(input(&c, frag(&whole, 0, 3, 96, 104, false), &mut b), FragResult::Kept));
    assert!(matches!(input(&c, frag(&whole, 0, 3, 104, 112, false), &mut b), FragResult::Drop(_, FragDrop::Bad)));
    // Past 65535 octets.
    let mut f = frag(&whole, 0, 4, 0, 16, true).data().to_vec();
    f[42..44].copy_from_slice(&(65528u16 | 1).to_be_bytes());
    assert!(matches!(input(&c, PacketBuf::from_slice(&f), &mut b), FragResult::Drop(_, FragDrop::Bad)));
    assert_eq!(c.len(), 1, "the good one is still held");
}

#[test]
fn the_frags_limit_flushes_the_oldest_and_expiry_frees_what_is_left() {
    let whole = datagram(&[], &payload(64));
    let c = FragCache6::new();
    let mut b = Bufs::default();
    for id in 0..10 {
        let f = frag(&whole, 0, id, 0, 8, true);
        let fh = find_frag_header(f.data()).unwrap().unwrap();
        assert!(matches!(c.input(f, fh, id as u64, 10, 60, &mut b), FragResult::Kept));
    }
    let f = frag(&whole, 0, 99, 0, 8, true);
    let fh = find_frag_header(f.data()).unwrap().unwrap();
    assert!(matches!(c.input(f, fh, 100, 10, 60, &mut b), FragResult::Kept));
    assert_eq!((c.len(), b.freed), (10, 1), "the least recently used one went");
    assert_eq!(c.expire(5_000_000_000, 1_000_000_000, &mut b), 10);
    assert!(c.is_empty());
    assert_eq!(b.freed, 11, "expired fragments go back to the pool they came from");
    let cnt = |a: &AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!((cnt(&c.count.inserts), cnt(&c.count.removals)), (11, 11));
}

#[test]
fn refragmenting_gives_back_fragments_of_the_largest_size_with_the_same_id() {
    let whole = datagram(&hbh(17), &payload(3000));
    let c = FragCache6::new();
    let mut b = Bufs::default();
    let parts = [(0, 1232, true), (1232, 2464, true), (2464, 3000, false)];
    let mut done = None;
    for (off, end, more) in parts {
        if let FragResult::Done(p) = input(&c, frag(&whole, 8, 77, off, end, more), &mut b) {
            done = Some(p);
        }
    }
    let p = done.unwrap();
    let mut out = Vec::new();
    let n = refragment6(p.data(), p.meta.flow_hash, p.meta.pf_frag_max as usize, || b.alloc(), |f| out.push(f));
    assert_eq!(n, Some(3));
    for (f, (off, end, more)) in out.iter().zip(parts) {
        assert_eq!(f.data(), frag(&whole, 8, 77, off, end, more).data(), "fragment at {off}");
    }
    // Under 8 octets a fragment cannot be cut.
    assert_eq!(refragment6(p.data(), 1, 7, || b.alloc(), |_| ()), None);
}
