//! Reads of one descriptor through io_uring: one multishot read
//! (`IORING_OP_READ_MULTISHOT`, Linux 6.7) stays armed on the TAP and
//! fills buffers this reader provides to the kernel (a provided-buffer
//! ring, 5.19), one completion a frame.
//!
//! The tun driver reads one frame per `read(2)`, so a TAP queue read with
//! `readv(2)` pays one system call a frame plus one that says EAGAIN, and
//! a worker that polls its queues pays that EAGAIN on every empty round.
//! With the read armed in the ring, a frame the kernel queues on the TAP
//! wakes the read (the ring's poll on the file), which runs as task work
//! in the submitting thread at its next entry into the kernel and posts a
//! completion in the shared completion queue. The worker finds frames by
//! reading that queue's head and tail in memory: an empty round is no
//! system call at all, a busy one is one `io_uring_enter(2)` (which runs
//! the pending reads) for the whole batch.
//!
//! The ring is set up with `IORING_SETUP_COOP_TASKRUN` and
//! `IORING_SETUP_TASKRUN_FLAG` (5.19): the kernel does not interrupt a
//! worker that runs in user space to do the reads, it raises
//! `IORING_SQ_TASKRUN` in the ring's flags, which [`UringReader::read_batch`]
//! checks to know when to enter. A worker that sleeps in poll(2) is woken
//! by the task work and then by the completion on the ring's descriptor
//! ([`UringReader::ring_fd`], what the queue gives to the worker's poll).
//! The reads run as the task work of the thread that armed the read: when
//! workers share a queue (a TAP with fewer queues than workers), a frame
//! can wait until that thread next enters the kernel (at the latest when
//! it sleeps in poll(2), after its idle spin).
//!
//! Each frame is copied from its provided buffer into a pool buffer and
//! the provided buffer handed back to the kernel at once (the ring holds
//! `BUFFERS` of them; a read that finds none ends the multishot with
//! ENOBUFS, the frames wait in the TAP's queue, and the next batch arms
//! it again). Provided buffers are as long as the pool's, so a frame that
//! fills one is longer than a pool buffer can hold; one longer than a
//! provided buffer cannot be read whole (tun's copy to user space comes
//! up short and the read fails, EFAULT). The caller counts both as
//! oversize (`tests/tap.rs` checks the count and that the next frame is
//! read).

use io_uring::{cqueue, opcode, types, IoUring, Probe};
use std::alloc::Layout;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

/// Provided buffers (a power of two, at most 32,768): how many frames the
/// kernel can read ahead of the worker before the read waits for it.
const BUFFERS: u16 = 128;
/// Provided buffers when they are longer than `LARGE` bytes (a TAP
/// with offloads reads super-frames of up to 64 KB: 64 of them hold 4 MB,
/// more than a TCP window's worth of super-frames).
const BUFFERS_LARGE: u16 = 64;
const LARGE: usize = 16 * 1024;
/// The provided-buffer group of this ring's one read.
const GROUP: u16 = 0;
/// The multishot read's user data.
const READ: u64 = 1;
/// The cancellation's user data (on drop).
const CANCEL: u64 = 2;
/// Read errors in a row after which the ring is given up (the caller
/// goes back to `readv(2)`).
const MAX_ERRORS: u32 = 8;

/// What one completion brought.
pub enum Read<'a> {
    /// A frame, in a provided buffer until the callback returns.
    Frame(&'a [u8]),
    /// A read that failed with this errno (the frame, if any, dropped by
    /// the kernel; EFAULT: longer than a provided buffer).
    Error(i32),
}

/// One multishot read of one descriptor into provided buffers.
pub struct UringReader {
    ring: IoUring,
    fd: RawFd,
    /// The provided-buffer ring: `BUFFERS` entries, page-aligned, shared
    /// with the kernel (it reads the entries, we write them and the tail).
    entries: *mut types::BufRingEntry,
    /// The buffers themselves, `BUFFERS` × `size` bytes.
    bufs: Box<[u8]>,
    size: usize,
    /// How many buffers (`BUFFERS`, or `BUFFERS_LARGE` for long ones).
    count: u16,
    /// Our copy of the buffer ring's tail (the kernel owns the head).
    tail: u16,
    /// Whether the multishot read is in the kernel (no completion without
    /// `IORING_CQE_F_MORE` seen since it was submitted).
    armed: bool,
    errors: u32,
}

// SAFETY: `entries` points at memory this reader owns alone (allocated in
// `new`, freed in `drop`); the reader is used by one thread at a time (a
// queue sits in a mutex), and io_uring's rings may be driven from any
// thread of the process (no IORING_SETUP_SINGLE_ISSUER).
unsafe impl Send for UringReader {}

fn entries_layout() -> Layout {
    // Room for the larger count whatever this reader uses.
    Layout::from_size_align(BUFFERS as usize * std::mem::size_of::<types::BufRingEntry>(), 4096)
        .expect("a valid layout")
}

impl UringReader {
    /// A reader of `fd` with buffers of `size` bytes each (the longest
    /// frame it reads whole). `Err` where the kernel has no io_uring,
    /// refuses it, or lacks multishot reads or buffer rings: the caller
    /// keeps `readv(2)`. Nothing is read until the first `read_batch`.
    pub fn new(fd: RawFd, size: usize) -> std::io::Result<UringReader> {
        let count = if size > LARGE { BUFFERS_LARGE } else { BUFFERS };
        let ring =
            IoUring::builder().setup_coop_taskrun().setup_taskrun_flag().setup_cqsize(2 * count as u32).build(4)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::ReadMulti::CODE) {
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no multishot read (Linux 6.7)"));
        }
        // SAFETY: a non-zero size, page-aligned layout.
        let entries = unsafe { std::alloc::alloc_zeroed(entries_layout()) } as *mut types::BufRingEntry;
        if entries.is_null() {
            std::alloc::handle_alloc_error(entries_layout());
        }
        let mut r = UringReader {
            ring,
            fd,
            entries,
            bufs: vec![0u8; count as usize * size].into_boxed_slice(),
            size,
            count,
            tail: 0,
            armed: false,
            errors: 0,
        };
        // SAFETY: the entries stay valid until unregistered in `drop`.
        unsafe { r.ring.submitter().register_buf_ring_with_flags(entries as u64, count, GROUP, 0)? };
        for bid in 0..count {
            r.give_back(bid);
        }
        r.publish_tail();
        Ok(r)
    }

    /// The ring's descriptor: readable when a completion waits (what an
    /// idle worker polls instead of the TAP's).
    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Hands buffer `bid` back to the kernel (visible at `publish_tail`).
    fn give_back(&mut self, bid: u16) {
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `slot` < count <= BUFFERS entries of our allocation; the kernel
        // reads only entries between its head and the published tail,
        // which this one is not yet.
        let e = unsafe { &mut *self.entries.add(slot) };
        e.set_addr(self.bufs[bid as usize * self.size..].as_ptr() as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: the tail is the u16 the kernel reads at the ring's start
        // (the first entry's `resv`), in our allocation; a release store
        // makes the entries written before it visible first.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Arms the read if it is not, runs the reads the kernel owes this
    /// thread (one `io_uring_enter`, only when it owes some or the read
    /// was armed now), then hands up to `max` completions to `take` in
    /// order. Returns how many it handed; `Err` when the ring is of no
    /// more use (the caller drops it and goes back to `readv(2)`).
    pub fn read_batch(&mut self, max: usize, mut take: impl FnMut(Read<'_>)) -> std::io::Result<usize> {
        let mut enter = false;
        if !self.armed {
            self.arm();
            enter = true;
        }
        // Completions already posted need no system call; pending task
        // work (a read the TAP's wake-up queued) does.
        if enter || (self.ring.completion().is_empty() && self.ring.submission().taskrun()) {
            self.enter()?;
        }
        let mut n = 0;
        let mut returned = false;
        while n < max {
            let Some(cqe) = self.ring.completion().next() else { break };
            if cqe.user_data() != READ {
                continue;
            }
            if !cqueue::more(cqe.flags()) {
                self.armed = false;
            }
            let res = cqe.result();
            if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                let len = res.max(0) as usize;
                let start = bid as usize * self.size;
                take(Read::Frame(&self.bufs[start..start + len.min(self.size)]));
                self.give_back(bid);
                returned = true;
                self.errors = 0;
                n += 1;
            } else if res == -libc::ENOBUFS || res == -libc::EAGAIN || res == -libc::EINTR || res == -libc::ECANCELED {
                // Out of buffers (the worker fell behind: the frames wait
                // in the TAP), or a read the kernel ended; armed again
                // below.
            } else if res < 0 {
                self.errors += 1;
                if self.errors >= MAX_ERRORS {
                    return Err(std::io::Error::from_raw_os_error(-res));
                }
                take(Read::Error(-res));
                n += 1;
            }
        }
        if returned {
            self.publish_tail();
        }
        // Armed before the worker may sleep on the ring's descriptor: a
        // read that ended must not leave the TAP unwatched.
        if !self.armed {
            self.arm();
            self.enter()?;
        }
        Ok(n)
    }

    fn arm(&mut self) {
        let e = opcode::ReadMulti::new(types::Fd(self.fd), 0, GROUP).build().user_data(READ);
        // SAFETY: the read writes only into provided buffers, which live
        // as long as the ring (see `drop`).
        if unsafe { self.ring.submission().push(&e) }.is_err() {
            unreachable!("io_uring submission queue full with at most one entry pending");
        }
        self.armed = true;
    }

    fn enter(&mut self) -> std::io::Result<()> {
        for _ in 0..MAX_ERRORS {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                // EBUSY: completions overflowed; reaping them makes room.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::from_raw_os_error(libc::EINTR))
    }
}

impl Drop for UringReader {
    fn drop(&mut self) {
        self.release();
    }
}

impl UringReader {
    /// Cancels the read if it is armed and waits (bounded) for its last
    /// completion, so that the kernel is done with the buffers before they
    /// are freed; if it never comes, leaks them instead. Returns whether
    /// the buffers were let go cleanly. Once only (from `drop`).
    fn release(&mut self) -> bool {
        if self.entries.is_null() {
            return true;
        }
        let mut done = !self.armed;
        if !done {
            let c = opcode::AsyncCancel::new(READ).build().user_data(CANCEL);
            // SAFETY: the entry holds no buffer.
            let pushed = unsafe { self.ring.submission().push(&c) }.is_ok();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while pushed && !done && std::time::Instant::now() < deadline {
                let ts = types::Timespec::new().nsec(10_000_000);
                let _ = self.ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&ts));
                for cqe in self.ring.completion() {
                    if cqe.user_data() == READ && !cqueue::more(cqe.flags()) {
                        done = true;
                    }
                }
            }
        }
        let clean = done && self.ring.submitter().unregister_buf_ring(GROUP).is_ok();
        if clean {
            // SAFETY: allocated in `new` with this layout; the kernel no
            // longer reads it.
            unsafe { std::alloc::dealloc(self.entries as *mut u8, entries_layout()) };
        } else {
            tracing::warn!("io_uring read not cancelled: its buffers are leaked");
            std::mem::forget(std::mem::take(&mut self.bufs));
        }
        self.entries = std::ptr::null_mut();
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> [i32; 2] {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two descriptors the test closes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
        fds
    }

    fn write(fd: i32, b: &[u8]) {
        // SAFETY: writes from a live slice.
        assert_eq!(unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }, b.len() as isize);
    }

    /// A pipe stands in for the TAP (a pipe read returns what is there, so
    /// each write is read as one "frame" when the reader keeps up): an
    /// idle ring makes no system call and finds nothing, data written
    /// later arrives through the armed read, more frames than buffers come
    /// through in order, and a reader dropped while armed lets go.
    #[test]
    fn an_armed_read_delivers_what_arrives_in_order_and_an_empty_round_finds_nothing() {
        let fds = pipe();
        let mut r = UringReader::new(fds[0], 64).expect("io_uring with multishot reads: this test needs Linux 6.7");
        let mut got: Vec<Vec<u8>> = Vec::new();
        assert_eq!(r.read_batch(16, |_| panic!("nothing written")).unwrap(), 0);
        assert!(r.armed);
        assert_eq!(r.read_batch(16, |_| panic!("nothing written")).unwrap(), 0);
        // 300 frames, more than the ring's buffers, read as they come.
        let mut i = 0u32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < 300 && std::time::Instant::now() < deadline {
            if i < 300 {
                write(fds[1], &[i as u8; 7]);
                i += 1;
            }
            r.read_batch(32, |rd| match rd {
                Read::Frame(f) => got.push(f.to_vec()),
                Read::Error(e) => panic!("read error {e}"),
            })
            .unwrap();
        }
        let all: Vec<u8> = got.concat();
        let want: Vec<u8> = (0..300u32).flat_map(|i| [i as u8; 7]).collect();
        assert_eq!(all, want, "every byte once, in order");
        assert!(r.armed);
        assert!(r.release(), "the armed read is cancelled and the buffers let go");
        drop(r);
        // SAFETY: our descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
