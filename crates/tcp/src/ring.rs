//! A fixed-capacity byte ring. Its memory is taken at the first byte
//! written, not when the connection is set up, and given back when an
//! empty ring is released (a connection in TIME_WAIT): an idle or closing
//! connection holds no buffer, as a BSD socket's empty sockbuf holds no
//! mbufs. The memory grows with use, as a sockbuf's mbuf chain does: the
//! first write takes what it needs (at least [`MIN_ALLOC`]), and a write
//! past the end doubles it, up to the capacity. A 1 KB response takes
//! 4 KiB, not the whole send buffer zeroed; a bulk transfer reaches the
//! capacity in a few doublings and stays there. Only the bytes taken are
//! zeroed (safe Rust: no uninitialised memory is ever read).
//! Sending: the bytes from SND.UNA on (unacknowledged, then unsent).
//! Receiving: the bytes delivered in order and not yet read; out-of-order
//! data is written into the free space past them at its offset and
//! committed when the hole before it fills.

/// The first allocation of a ring, at least (or its capacity if smaller).
pub const MIN_ALLOC: usize = 4096;

/// A byte ring of fixed capacity.
pub struct Ring {
    /// Empty until the first write; then between [`MIN_ALLOC`] and `cap`
    /// bytes, grown by [`grow`](Self::grow). Offsets wrap at its length.
    buf: Box<[u8]>,
    cap: usize,
    head: usize,
    len: usize,
}

impl Ring {
    /// A ring of `capacity` bytes (allocated at the first write).
    pub fn new(capacity: usize) -> Ring {
        Ring { buf: Box::default(), cap: capacity, head: 0, len: 0 }
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn free(&self) -> usize {
        self.cap - self.len
    }
    /// Whether the ring holds its memory now.
    pub fn is_allocated(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Gives the memory back if the ring is empty (no byte queued, none
    /// waiting past the end); true if it holds none afterwards. Only for
    /// a ring that takes no more out-of-order bytes (the caller knows).
    pub fn release(&mut self) -> bool {
        if self.len == 0 {
            self.buf = Box::default();
            self.head = 0;
        }
        self.buf.is_empty()
    }

    /// Bytes of memory the ring holds now.
    pub fn allocated(&self) -> usize {
        self.buf.len()
    }

    /// Makes the memory hold at least `need` bytes (at most `cap`): the
    /// first allocation, or a doubling that moves the bytes to the front
    /// of the new memory in order (the byte at offset x of the ring, in
    /// order or waiting past the end, is at index x afterwards).
    fn grow(&mut self, need: usize) {
        let have = self.buf.len();
        if need <= have {
            return;
        }
        let size = need.max(MIN_ALLOC).max(have * 2).next_power_of_two().min(self.cap);
        let mut v = Vec::with_capacity(size);
        v.extend_from_slice(&self.buf[self.head..]);
        v.extend_from_slice(&self.buf[..self.head]);
        v.resize(size, 0);
        self.buf = v.into_boxed_slice();
        self.head = 0;
    }

    fn at(&self, off: usize) -> usize {
        let cap = self.buf.len();
        let i = self.head + off;
        if i >= cap {
            i - cap
        } else {
            i
        }
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn enqueue(&mut self, data: &[u8]) -> usize {
        let n = self.write_at(0, data);
        self.len += n;
        n
    }

    /// Copies up to `out.len()` bytes from the front and removes them.
    pub fn dequeue(&mut self, out: &mut [u8]) -> usize {
        let n = self.peek(0, out);
        self.consume(n);
        n
    }

    /// Removes `n` bytes from the front (n is clamped to the length).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = self.at(n);
        // The head is not reset when the ring empties: out-of-order bytes
        // may wait past the end at their offsets.
        self.len -= n;
    }

    /// Copies bytes starting `off` bytes into the ring (within its length).
    pub fn peek(&self, off: usize, out: &mut [u8]) -> usize {
        if off >= self.len || self.buf.is_empty() {
            return 0;
        }
        let n = out.len().min(self.len - off);
        let start = self.at(off);
        let first = n.min(self.buf.len() - start);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        out[first..n].copy_from_slice(&self.buf[..n - first]);
        n
    }

    /// Writes `data` into the free space `off` bytes past the end, without
    /// changing the length; returns how many bytes fit.
    pub fn write_at(&mut self, off: usize, data: &[u8]) -> usize {
        if off >= self.free() {
            return 0;
        }
        let n = data.len().min(self.free() - off);
        if n == 0 {
            return 0;
        }
        self.grow(self.len + off + n);
        let start = self.at(self.len + off);
        let first = n.min(self.buf.len() - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..n]);
        n
    }

    /// Makes `n` bytes written by [`write_at`](Self::write_at) at offset 0
    /// part of the ring.
    pub fn commit(&mut self, n: usize) {
        self.len += n.min(self.free());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_and_keeps_order() {
        let mut r = Ring::new(8);
        assert_eq!(r.enqueue(b"abcdef"), 6);
        let mut o = [0; 4];
        assert_eq!(r.dequeue(&mut o), 4);
        assert_eq!(&o, b"abcd");
        assert_eq!(r.enqueue(b"ghijklmn"), 6, "only the free space is taken");
        let mut all = [0; 8];
        assert_eq!(r.peek(0, &mut all), 8);
        assert_eq!(&all, b"efghijkl");
        assert_eq!(r.peek(6, &mut all), 2);
        assert_eq!(&all[..2], b"kl");
    }

    #[test]
    fn out_of_order_bytes_survive_the_ring_emptying() {
        let mut r = Ring::new(8);
        r.enqueue(b"abc");
        assert_eq!(r.write_at(2, b"Z"), 1);
        let mut o = [0; 3];
        r.dequeue(&mut o);
        assert_eq!(r.write_at(0, b"XY"), 2);
        r.commit(3);
        assert_eq!(r.dequeue(&mut o), 3);
        assert_eq!(&o, b"XYZ");
    }

    #[test]
    fn out_of_order_write_then_commit() {
        let mut r = Ring::new(8);
        r.enqueue(b"ab");
        assert_eq!(r.write_at(2, b"EF"), 2);
        assert_eq!(r.write_at(0, b"CD"), 2);
        r.commit(4);
        let mut o = [0; 8];
        assert_eq!(r.dequeue(&mut o), 6);
        assert_eq!(&o[..6], b"abCDEF");
        assert_eq!(r.write_at(8, b"x"), 0, "past the free space");
    }

    #[test]
    fn memory_is_taken_at_the_first_write_and_released_when_empty() {
        let mut r = Ring::new(8);
        assert!(!r.is_allocated());
        assert_eq!(r.enqueue(b""), 0);
        assert!(!r.is_allocated(), "an empty write takes nothing");
        assert_eq!(r.capacity(), 8);
        assert_eq!(r.free(), 8);
        let mut o = [0; 4];
        assert_eq!(r.dequeue(&mut o), 0);
        assert_eq!(r.enqueue(b"abc"), 3);
        assert!(r.is_allocated());
        assert!(!r.release(), "a ring with bytes keeps its memory");
        assert_eq!(r.dequeue(&mut o), 3);
        assert_eq!(&o[..3], b"abc");
        assert!(r.release());
        assert!(!r.is_allocated());
        assert_eq!(r.enqueue(b"defghijkl"), 8, "usable again, full capacity");
        assert_eq!(r.dequeue(&mut o), 4);
        assert_eq!(&o, b"defg");
    }

    #[test]
    fn memory_grows_with_use_up_to_the_capacity() {
        let cap = 64 * 1024 + 100;
        let mut r = Ring::new(cap);
        assert_eq!(r.enqueue(&[1; 1000]), 1000);
        assert_eq!(r.allocated(), MIN_ALLOC, "a small write takes the minimum");
        let mut o = vec![0; 900];
        assert_eq!(r.dequeue(&mut o), 900);
        // The head is now past the front: the next growth wraps.
        assert_eq!(r.enqueue(&[2; 4000]), 4000);
        assert_eq!(r.allocated(), 8192, "doubled");
        let mut all = vec![0; 4100];
        assert_eq!(r.peek(0, &mut all), 4100);
        assert!(all[..100].iter().all(|&b| b == 1) && all[100..].iter().all(|&b| b == 2), "order kept across the move");
        assert_eq!(r.enqueue(&vec![3; cap]), cap - 4100, "the capacity, not the memory, bounds a write");
        assert_eq!(r.allocated(), cap, "never more than the capacity");
        assert_eq!(r.free(), 0);
    }

    #[test]
    fn out_of_order_bytes_move_with_a_growth() {
        let mut r = Ring::new(1 << 16);
        r.enqueue(&[1; 3000]);
        let mut o = vec![0; 3000];
        r.dequeue(&mut o);
        r.enqueue(b"ab");
        // Past the end, still inside the first 4 KiB (wrapped).
        assert_eq!(r.write_at(1000, b"Z"), 1);
        assert_eq!(r.allocated(), MIN_ALLOC);
        // Past the memory: the ring grows, the waiting byte moves along.
        assert_eq!(r.write_at(9000, b"Y"), 1);
        assert!(r.allocated() >= 9003);
        assert_eq!(r.write_at(0, &[7; 1000]), 1000);
        r.commit(1001);
        let mut all = vec![0; 1003];
        assert_eq!(r.dequeue(&mut all), 1003);
        assert_eq!(&all[..2], b"ab");
        assert_eq!(all[1002], b'Z');
        // 'Y' waited at 9002, 7999 past the new front.
        assert_eq!(r.write_at(0, &[8; 7999]), 7999);
        r.commit(8000);
        let mut rest = vec![0; 8000];
        assert_eq!(r.dequeue(&mut rest), 8000);
        assert_eq!(rest[7999], b'Y');
    }

    proptest! {
        /// The ring against a VecDeque: any sequence of appends and reads.
        #[test]
        fn behaves_as_a_queue(ops in proptest::collection::vec((any::<bool>(), 0usize..20), 0..100)) {
            let mut r = Ring::new(16);
            let mut model = std::collections::VecDeque::new();
            let mut next = 0u8;
            for (push, n) in ops {
                if push {
                    let data: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                    let k = r.enqueue(&data);
                    prop_assert_eq!(k, n.min(16 - model.len()));
                    model.extend(&data[..k]);
                } else {
                    let mut o = vec![0; n];
                    let k = r.dequeue(&mut o);
                    let want: Vec<u8> = model.drain(..n.min(model.len())).collect();
                    prop_assert_eq!(&o[..k], &want[..]);
                }
                prop_assert_eq!(r.len(), model.len());
            }
        }

        /// A ring that grows (capacity above the first allocation, not a
        /// power of two) against a VecDeque, with out-of-order writes past
        /// the end committed later: what any byte read back is.
        #[test]
        fn grows_as_a_queue(ops in proptest::collection::vec((0u8..3, 0usize..6000), 0..60)) {
            const CAP: usize = 3 * MIN_ALLOC + 100;
            let mut r = Ring::new(CAP);
            let mut model = std::collections::VecDeque::new();
            let mut next = 0u8;
            let mut gen = |n: usize| -> Vec<u8> { (0..n).map(|_| { next = next.wrapping_add(1); next }).collect() };
            for (op, n) in ops {
                match op {
                    0 => {
                        let data = gen(n);
                        let k = r.enqueue(&data);
                        prop_assert_eq!(k, n.min(CAP - model.len()));
                        model.extend(&data[..k]);
                    }
                    1 => {
                        let mut o = vec![0; n];
                        let k = r.dequeue(&mut o);
                        let want: Vec<u8> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(&o[..k], &want[..]);
                    }
                    _ => {
                        // A segment past a hole, then the hole filled.
                        let gap = n / 2;
                        let late = gen(n - gap);
                        let k = r.write_at(gap, &late);
                        let early = gen(gap);
                        let j = r.write_at(0, &early);
                        if j == gap {
                            r.commit(gap + k);
                            model.extend(&early);
                            model.extend(&late[..k]);
                        } else {
                            r.commit(j);
                            model.extend(&early[..j]);
                        }
                    }
                }
                prop_assert_eq!(r.len(), model.len());
                prop_assert!(r.allocated() <= CAP);
            }
            let mut o = vec![0; CAP];
            let k = r.dequeue(&mut o);
            prop_assert_eq!(&o[..k], &model.iter().copied().collect::<Vec<u8>>()[..]);
        }
    }
}
