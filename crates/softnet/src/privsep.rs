//! Trusting no caller: who is at the other end of the control socket
//! (SO_PEERCRED, SO_PEERGROUPS; unix(7)), who may be there (root, the
//! daemon's own user, or members of the configuration's `control_group`),
//! and giving up root once the devices are open (`user`: setgroups,
//! setgid, setuid, as OpenBSD daemons drop to their `_daemon` user after
//! opening what they need).

use std::ffi::CString;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;

/// The credentials of a connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (SO_PEERGROUPS; empty where the kernel has
    /// none to tell).
    pub groups: Vec<u32>,
}

/// Who may use the control socket besides root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    /// The daemon's own uid (after dropping privileges: its user).
    pub self_uid: u32,
    /// `control_group`: members (primary or supplementary) may connect.
    pub group: Option<u32>,
}

/// The process's effective uid and gid: the owner of sockets the program
/// opens (pf's `user` and `group` match it).
pub fn process_owner() -> softnet_core::sock::Owner {
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    unsafe { softnet_core::sock::Owner { uid: libc::geteuid(), gid: libc::getegid() } }
}

impl Access {
    /// The policy of the running process, with `group` allowed.
    pub fn current(group: Option<u32>) -> Access {
        // SAFETY: geteuid cannot fail and touches no memory.
        Access { self_uid: unsafe { libc::geteuid() }, group }
    }

    /// Whether `c` may send requests; the error says why not.
    pub fn check(&self, c: &PeerCred) -> Result<(), String> {
        if c.uid == 0 || c.uid == self.self_uid {
            return Ok(());
        }
        if let Some(g) = self.group {
            if c.gid == g || c.groups.contains(&g) {
                return Ok(());
            }
        }
        Err(match self.group {
            Some(g) => format!("permission denied: uid {} is not root and not in group {g}", c.uid),
            None => format!("permission denied: uid {} is not root", c.uid),
        })
    }
}

/// The peer's credentials as the kernel recorded them at connect.
pub fn peer_cred(s: &UnixStream) -> std::io::Result<PeerCred> {
    let mut uc = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket fd, a ucred-sized buffer and its length.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut uc as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut glen = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
    // SAFETY: as above, with a buffer of 256 gids; on ERANGE (more
    // groups) only the primary group is used.
    let rc = unsafe {
        libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut glen)
    };
    if rc == 0 {
        groups.truncate(glen as usize / std::mem::size_of::<libc::gid_t>());
    } else {
        groups.clear();
    }
    Ok(PeerCred { pid: uc.pid, uid: uc.uid, gid: uc.gid, groups })
}

/// A user as the password database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// getpwnam_r: the user `name`.
pub fn lookup_user(name: &str) -> Result<Account, String> {
    let c = CString::new(name).map_err(|_| format!("user {name:?}: invalid name"))?;
    // SAFETY: passwd is plain data; all-zero is valid and overwritten.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid name, result struct, buffer and out pointer.
    let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return Err(format!("user {name:?}: no such user"));
    }
    Ok(Account { name: name.to_string(), uid: pw.pw_uid, gid: pw.pw_gid })
}

/// getgrnam_r: the gid of group `name`.
pub fn lookup_group(name: &str) -> Result<u32, String> {
    let c = CString::new(name).map_err(|_| format!("group {name:?}: invalid name"))?;
    // SAFETY: group is plain data; all-zero is valid and overwritten.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 65536];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: valid name, result struct, buffer and out pointer.
    let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return Err(format!("group {name:?}: no such group"));
    }
    Ok(gr.gr_gid)
}

/// Gives up root for good: supplementary groups to the user's group only,
/// then the gid, then the uid (all threads: glibc applies set*id to every
/// thread of the process). Checks that root cannot be had back.
pub fn drop_to(a: &Account) -> Result<(), String> {
    let groups = [a.gid as libc::gid_t];
    // SAFETY: plain system calls with a valid one-element group list.
    unsafe {
        if libc::setgroups(1, groups.as_ptr()) != 0 {
            return Err(format!("setgroups: {}", std::io::Error::last_os_error()));
        }
        if libc::setresgid(a.gid, a.gid, a.gid) != 0 {
            return Err(format!("setresgid({}): {}", a.gid, std::io::Error::last_os_error()));
        }
        if libc::setresuid(a.uid, a.uid, a.uid) != 0 {
            return Err(format!("setresuid({}): {}", a.uid, std::io::Error::last_os_error()));
        }
        if a.uid != 0 && libc::setuid(0) == 0 {
            return Err("root could be regained after dropping privileges".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32, groups: &[u32]) -> PeerCred {
        PeerCred { pid: 1, uid, gid, groups: groups.to_vec() }
    }

    #[test]
    fn root_and_the_daemons_own_user_are_always_let_in() {
        let a = Access { self_uid: 500, group: None };
        assert!(a.check(&cred(0, 0, &[])).is_ok());
        assert!(a.check(&cred(500, 500, &[])).is_ok());
        let e = a.check(&cred(1000, 1000, &[])).unwrap_err();
        assert_eq!(e, "permission denied: uid 1000 is not root");
    }

    #[test]
    fn members_of_the_control_group_are_let_in_by_primary_or_supplementary_group() {
        let a = Access { self_uid: 0, group: Some(77) };
        assert!(a.check(&cred(1000, 77, &[])).is_ok());
        assert!(a.check(&cred(1000, 1000, &[5, 77])).is_ok());
        let e = a.check(&cred(1000, 1000, &[5])).unwrap_err();
        assert_eq!(e, "permission denied: uid 1000 is not root and not in group 77");
    }

    #[test]
    fn a_socket_pair_tells_this_process_its_own_credentials() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.pid as u32, std::process::id());
        // SAFETY: getuid/getgid cannot fail.
        assert_eq!((c.uid, c.gid), unsafe { (libc::getuid(), libc::getgid()) });
    }

    #[test]
    fn root_exists_and_an_unknown_user_or_group_is_an_error() {
        assert_eq!(lookup_user("root").unwrap().uid, 0);
        assert_eq!(lookup_group("root").unwrap(), 0);
        assert!(lookup_user("no-such-user-softnet").unwrap_err().contains("no such user"));
        assert!(lookup_group("no-such-group-softnet").unwrap_err().contains("no such group"));
    }
}
