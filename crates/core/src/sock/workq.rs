//! A worker's queue of sockets the application acted on (`Sockets::
//! pending`): every `write`, and every `read` that opens the window,
//! queues its socket for the worker once (the socket's `queued` flag).
//! A lock-free ring of fixed size takes them without allocating; only
//! when more sockets than it holds wait at once does the rest go to an
//! unbounded segmented queue (which allocates a block per 31 entries:
//! what every push cost before). Order between the two does not matter:
//! each socket is in the queue at most once.

use crossbeam::queue::{ArrayQueue, SegQueue};

/// Sockets the ring holds before the overflow queue is used.
pub(crate) const RING: usize = 1024;

pub(crate) struct WorkQueue<T> {
    ring: ArrayQueue<T>,
    overflow: SegQueue<T>,
}

impl<T> WorkQueue<T> {
    pub(crate) fn new() -> WorkQueue<T> {
        WorkQueue { ring: ArrayQueue::new(RING), overflow: SegQueue::new() }
    }

    pub(crate) fn push(&self, t: T) {
        if let Err(t) = self.ring.push(t) {
            self.overflow.push(t);
        }
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.ring.pop().or_else(|| self.overflow.pop())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.overflow.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_keeps_every_entry_once() {
        let q = WorkQueue::new();
        assert!(q.is_empty());
        let n = RING + 100;
        for i in 0..n {
            q.push(i);
        }
        assert!(!q.is_empty());
        let mut got: Vec<usize> = std::iter::from_fn(|| q.pop()).collect();
        assert!(q.is_empty());
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        // The ring is used again once drained.
        q.push(7);
        assert_eq!(q.ring.len(), 1);
        assert_eq!(q.pop(), Some(7));
    }
}
