//! Batched writes to one descriptor through io_uring: a batch of frames
//! becomes one `io_uring_enter(2)` instead of one `write(2)` each.
//!
//! The tun driver has no batched write for user space (its `sendmsg`
//! batching is vhost's), so a TAP queue pays one system call per frame.
//! For the host twin (`hostif`) that also means one synchronous wake-up of
//! the host's reader per frame: a tun write runs the host's receive
//! (`netif_receive_skb`, UDP's enqueue, `sock_def_readable` with WF_SYNC)
//! in the writer's system call, and the woken reader preempts the worker
//! on its return, once per frame. Submitted as one batch, every write of
//! the batch runs inside the same `io_uring_enter`, and the reader, woken
//! once, finds the whole batch in its socket.
//!
//! io_uring runs each write inline; one that cannot (the device's queue
//! full) is parked by the kernel until the file is writable. `write_batch`
//! waits for those a fraction of a millisecond, then cancels them and
//! counts them as `write(2)`'s EAGAIN, so that it returns with every write
//! complete or cancelled and no buffer in the kernel's hands.

use io_uring::{opcode, types, IoUring};
use std::os::fd::RawFd;

/// Submission queue entries: a batch larger than this goes in several
/// submissions.
const ENTRIES: u32 = 64;
/// `io_uring_enter` interrupted (EINTR) this many times in a row gives up
/// on the ring (the caller falls back to `write(2)`).
const RETRIES: u32 = 8;
/// How long a batch may wait for writes that did not complete inline
/// before they are cancelled: a write to a TAP completes inline, so this
/// is only reached when the device's queue is full.
const WAIT_NS: u32 = 200_000;
/// The cancellation's user data (no write has this index).
const CANCEL: u64 = u64::MAX;

/// One ring for the writes of one queue.
pub struct UringWriter {
    ring: IoUring,
}

/// Why the ring could not take a batch: the caller writes what is left
/// (`None` in the results) with `write(2)` and drops the ring.
#[derive(Debug)]
pub struct RingFailed(pub std::io::Error);

impl UringWriter {
    /// A ring for `ENTRIES` writes at a time; `Err` where the kernel has
    /// no io_uring or refuses it (`kernel.io_uring_disabled`, a seccomp
    /// filter), so the caller keeps `write(2)`.
    pub fn new() -> std::io::Result<UringWriter> {
        // Deferred task work is of no use to writes that complete inline;
        // COOP_TASKRUN (5.19) spares the worker an interrupt where some
        // does come. Older kernels get a plain ring.
        let ring = match IoUring::builder().setup_coop_taskrun().build(ENTRIES) {
            Ok(r) => r,
            Err(_) => IoUring::new(ENTRIES)?,
        };
        Ok(UringWriter { ring })
    }

    /// Writes `buf(i)` for each `i` of `0..results.len()` to `fd` as one
    /// write each, `ENTRIES` per submission, and stores each write's
    /// result (bytes written or `-errno`) in `results[i]` (all `None` on
    /// entry). On `Err` the writes whose result is `None` were not done.
    pub fn write_batch<'a>(
        &mut self,
        fd: RawFd,
        buf: impl Fn(usize) -> &'a [u8],
        results: &mut [Option<i32>],
    ) -> Result<(), RingFailed> {
        let n = results.len();
        let mut start = 0;
        while start < n {
            let end = (start + ENTRIES as usize).min(n);
            {
                let mut sq = self.ring.submission();
                for i in start..end {
                    let b = buf(i);
                    let e = opcode::Write::new(types::Fd(fd), b.as_ptr(), b.len() as u32).build().user_data(i as u64);
                    // SAFETY: the buffer stays borrowed (alive, unmoved)
                    // until this call has reaped its completion below.
                    if unsafe { sq.push(&e) }.is_err() {
                        // Never: the queue is empty at the start of a chunk
                        // and a chunk is at most its size.
                        unreachable!("io_uring submission queue full");
                    }
                }
            }
            let want = end - start;
            let mut done = 0;
            let mut interrupted = 0;
            let mut cancelled = false;
            while done < want {
                let r = if cancelled {
                    self.ring.submit_and_wait(1)
                } else {
                    let ts = types::Timespec::new().nsec(WAIT_NS);
                    self.ring.submitter().submit_with_args(want - done, &types::SubmitArgs::new().timespec(&ts))
                };
                match r {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ETIME) && !cancelled => {
                        // A write the kernel parked to wait for room (a
                        // pollable file without FMODE_NOWAIT is retried
                        // when writable, O_NONBLOCK or not): cancel what
                        // is left, so that no buffer stays in the kernel's
                        // hands; those complete with -ECANCELED.
                        let c = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build().user_data(CANCEL);
                        // SAFETY: the entry holds no buffer.
                        if unsafe { self.ring.submission().push(&c) }.is_err() {
                            unreachable!("io_uring submission queue full after a submit");
                        }
                        cancelled = true;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) && interrupted < RETRIES => interrupted += 1,
                    Err(e) => {
                        // Reap what did complete; the caller writes the
                        // rest itself and drops this ring (its unsubmitted
                        // entries go with it).
                        self.reap(results, &mut done);
                        return Err(RingFailed(e));
                    }
                }
                self.reap(results, &mut done);
            }
            start = end;
        }
        Ok(())
    }

    fn reap(&mut self, results: &mut [Option<i32>], done: &mut usize) {
        for cqe in self.ring.completion() {
            if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                // A cancelled write is one the link could not take at
                // once: write(2)'s EAGAIN.
                let res = cqe.result();
                *r = Some(if res == -libc::ECANCELED { -libc::EAGAIN } else { res });
                *done += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe stands in for the TAP: the ring's writes land in order, one
    /// result each, and a write to a full pipe is cancelled and reported
    /// as EAGAIN instead of blocking the worker.
    #[test]
    fn a_batch_is_written_in_order_with_a_result_per_write_and_a_full_pipe_says_eagain() {
        // A kernel without io_uring (or a sandbox that forbids it) fails
        // here rather than passing untested; the queue's write(2) fallback
        // is what the TAP tests exercise there.
        let mut w = UringWriter::new().expect("io_uring_setup: this test needs io_uring");
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two descriptors we close below.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
        let frames: Vec<Vec<u8>> = (0..150u32).map(|i| vec![i as u8; 10 + (i as usize % 7)]).collect();
        let bufs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let mut res = vec![None; bufs.len()];
        w.write_batch(fds[1], |i| bufs[i], &mut res).unwrap();
        for (r, b) in res.iter().zip(&bufs) {
            assert_eq!(*r, Some(b.len() as i32));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut got = vec![0u8; total + 16];
        // SAFETY: reads into a live buffer of that length.
        let n = unsafe { libc::read(fds[0], got.as_mut_ptr().cast(), got.len()) };
        assert_eq!(n as usize, total);
        assert_eq!(got[..total], frames.concat()[..]);
        // Fill the pipe: the write that does not fit says EAGAIN.
        let big = vec![0u8; 1 << 20];
        let mut res = vec![None; 2];
        w.write_batch(fds[1], |_| &big[..], &mut res).unwrap();
        assert!(res[0].unwrap() > 0, "{res:?}");
        assert_eq!(res[1], Some(-libc::EAGAIN), "{res:?}");
        // SAFETY: our descriptors, closed once.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
