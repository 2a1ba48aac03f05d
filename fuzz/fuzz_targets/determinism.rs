//! A fixed random source for the whole fuzz process, so that a run from a
//! fixed seed (`fuzz/run.sh` under `FUZZ_RUNS=1`: `-seed=1`) executes the
//! same inputs the same way on every machine: std's `HashMap`s draw their
//! keys from getrandom(2) (a different iteration order each process, so
//! different coverage fed back to libFuzzer, so a different corpus), and so
//! do pf's state-table seed and the stack's entropy. This definition of
//! `getrandom` in the executable takes the place of libc's (std calls it
//! through libc) and returns a fixed sequence (SplitMix64). Nothing in a
//! fuzz process needs unpredictable numbers.

use std::sync::atomic::{AtomicU64, Ordering};

static STATE: AtomicU64 = AtomicU64::new(0x5eed_f0cc_ed5e_ed00);

/// SplitMix64's next value.
fn next() -> u64 {
    let mut z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// getrandom(2) as libc declares it, never failing or blocking.
///
/// # Safety
///
/// As getrandom(2): `buf` is valid for writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, _flags: u32) -> isize {
    let mut done = 0;
    while done < len {
        let word = next().to_le_bytes();
        let n = (len - done).min(word.len());
        // SAFETY: `done + n <= len`, inside the caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(word.as_ptr(), buf.add(done), n) };
        done += n;
    }
    len as isize
}
