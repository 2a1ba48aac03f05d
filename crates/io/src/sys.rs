//! Thin wrappers over the few libc calls the links make.

use crate::IoError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `IFNAMSIZ`: device names are at most 15 bytes plus NUL.
pub const IFNAMSIZ: usize = 16;

/// `struct ifreq`: a name and a 24-byte union (the largest member on 64-bit
/// Linux is `struct ifmap`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IfReq {
    pub name: [u8; IFNAMSIZ],
    pub data: [u8; 24],
}

impl IfReq {
    pub fn new(dev: &str) -> Result<Self, IoError> {
        check_name(dev)?;
        let mut r = IfReq { name: [0; IFNAMSIZ], data: [0; 24] };
        r.name[..dev.len()].copy_from_slice(dev.as_bytes());
        Ok(r)
    }

    pub fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    pub fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    pub fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }

    /// Points the union's `ifr_data` at `p` (SIOCETHTOOL).
    pub fn set_ptr<T>(&mut self, p: *mut T) {
        self.data[..8].copy_from_slice(&(p as usize as u64).to_ne_bytes());
    }
}

/// Device names the kernel accepts: 1..=15 bytes, no '/', no whitespace.
pub fn check_name(dev: &str) -> Result<(), IoError> {
    if dev.is_empty() || dev.len() >= IFNAMSIZ || dev.bytes().any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace()) {
        return Err(IoError::invalid(dev, "not a valid device name (1-15 bytes, no '/' or spaces)"));
    }
    Ok(())
}

/// A datagram socket for interface ioctls, in the calling thread's namespace.
pub fn ctl_socket(dev: &str) -> Result<OwnedFd, IoError> {
    // SAFETY: plain socket(2); the fd is owned immediately.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(IoError::last(dev, "socket(AF_INET)"));
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, req, &mut ifreq)` with the error attributed to `dev`/`call`.
pub fn ifreq_ioctl(
    fd: &OwnedFd,
    req: libc::Ioctl,
    ifr: &mut IfReq,
    dev: &str,
    call: &'static str,
) -> Result<(), IoError> {
    // SAFETY: ifr is a valid, writable `struct ifreq` for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, ifr as *mut IfReq) };
    if r < 0 {
        return Err(IoError::last(dev, call));
    }
    Ok(())
}

pub fn setsockopt<T>(
    fd: &OwnedFd,
    level: i32,
    opt: i32,
    val: &T,
    dev: &str,
    call: &'static str,
) -> Result<(), IoError> {
    // SAFETY: val points to a live T of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(IoError::last(dev, call));
    }
    Ok(())
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Bumps an owner-only counter without a locked instruction (one writer;
/// readers on other threads see a recent value).
#[inline]
pub fn bump(c: &std::sync::atomic::AtomicU64, n: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}
