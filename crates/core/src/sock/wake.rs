//! Task wakers beside the condition variables the blocking API waits on:
//! an async caller (`async_api`, feature `tokio`) that finds nothing to
//! read, no room to write or no connection to accept leaves its waker
//! here, under the same lock the worker takes before it signals the
//! condition variable, so no wake-up is lost between the check and the
//! registration. The worker wakes them where it notifies blocked threads.

use std::task::Waker;

/// The read and write wakers of one socket (one task each way, as a
/// tokio `TcpStream` half).
#[derive(Default)]
pub struct TaskWakers {
    read: Option<Waker>,
    write: Option<Waker>,
}

fn register(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

impl TaskWakers {
    /// The task to wake when data (or end of stream, or an error) arrives.
    pub fn register_read(&mut self, w: &Waker) {
        register(&mut self.read, w);
    }
    /// The task to wake when room to write opens (or the state changes).
    pub fn register_write(&mut self, w: &Waker) {
        register(&mut self.write, w);
    }
    /// Whether a task is to be woken: a reader, or a writer when
    /// `writable` (its socket's room reached the low-water mark).
    #[inline]
    pub fn due(&self, writable: bool) -> bool {
        self.read.is_some() || (writable && self.write.is_some())
    }

    /// Wakes and forgets both: a woken task polls again and registers
    /// anew if it still has to wait.
    #[inline]
    pub fn wake(&mut self) {
        if let Some(w) = self.read.take() {
            w.wake();
        }
        if let Some(w) = self.write.take() {
            w.wake();
        }
    }
}
