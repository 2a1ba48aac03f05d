//! The control plane's side of the neighbor cache: local entries for the
//! router's addresses, `ndp -s`, `ndp -d`, `ndp -c`, listing.

use super::{Entry, Nd6Table, NdEntry, NdEntryKind, NdError, NdState};
use crate::iface::{IfIndex, IfSnapshot, Interface};
use crate::packet::PacketBuf;
use crate::time::Instant;
use softnet_wire::ethernet::MacAddr;
use softnet_wire::ipv6::Ipv6AddrExt;
use std::net::Ipv6Addr;

impl Nd6Table {
    /// Replaces whatever (`ifindex`, `addr`) had; the old entry's held
    /// frames are returned (control thread). Refused when the table is
    /// full and the key is new.
    fn put(&self, ifindex: IfIndex, addr: Ipv6Addr, e: Entry) -> Result<Vec<PacketBuf>, NdError> {
        let key = (ifindex, addr);
        let mut shard = self.shard(addr).lock();
        let old = if shard.contains_key(&key) { self.remove_locked(&mut shard, &key) } else { None };
        if !self.reserve_entry() {
            return Err(NdError::Full(addr));
        }
        shard.insert(key, e);
        self.bump();
        Ok(old.map(|o| o.hold.into_iter().collect()).unwrap_or_default())
    }

    /// An address of the router was configured on `ifp` (nd6_rtrequest's
    /// RTF_LOCAL entry: REACHABLE, permanent, flag `l`).
    pub fn add_local(&self, ifp: &Interface, addr: Ipv6Addr) {
        let e = Entry::new(NdEntryKind::Local, NdState::Reachable, ifp.mac());
        // A full table still takes the router's own addresses.
        let key = (ifp.index(), addr);
        let mut shard = self.shard(addr).lock();
        self.remove_locked(&mut shard, &key);
        self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shard.insert(key, e);
        self.bump();
    }

    /// An address of the router was removed from `ifp`.
    pub fn remove_local(&self, ifp: &Interface, addr: Ipv6Addr) {
        let key = (ifp.index(), addr);
        let mut shard = self.shard(addr).lock();
        if shard.get(&key).is_some_and(|e| e.kind == NdEntryKind::Local) {
            self.remove_locked(&mut shard, &key);
        }
    }

    /// The interface an `ndp -s`/`ndp -d` address belongs to: the scope's
    /// for a link-local address (`fe80::1%em0`), else the one with a
    /// prefix containing it.
    fn interface_for(ifs: &IfSnapshot, addr: Ipv6Addr, scope: Option<IfIndex>) -> Option<&std::sync::Arc<Interface>> {
        match scope {
            Some(i) => ifs.get(i),
            None => ifs.iter().find(|i| i.inet6().addrs.iter().any(|a| a.contains(addr))),
        }
    }

    /// `ndp -s addr mac [temp] [proxy]`: a static entry (REACHABLE, no
    /// NUD; `temp`: ends after `temp_lifetime`) on the interface whose
    /// prefix contains `addr` (or `scope` for a link-local one). An
    /// existing entry is replaced.
    #[allow(clippy::too_many_arguments)]
    pub fn add_static(
        &self,
        now: Instant,
        ifs: &IfSnapshot,
        addr: Ipv6Addr,
        scope: Option<IfIndex>,
        mac: MacAddr,
        temp: bool,
        proxy: bool,
    ) -> Result<IfIndex, NdError> {
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(NdError::CannotConfigure(addr));
        }
        if addr.is_link_local_unicast() && scope.is_none() {
            return Err(NdError::NoRoute(addr));
        }
        let ifp = Self::interface_for(ifs, addr, scope).ok_or(NdError::NoRoute(addr))?;
        if ifp.addr6_state(addr).is_some() {
            return Err(NdError::LocalAddress(addr));
        }
        let mut e = Entry::new(NdEntryKind::Static, NdState::Reachable, mac);
        e.proxy = proxy;
        if temp {
            e.timer = Some(now + self.config.temp_lifetime);
        }
        self.put(ifp.index(), addr, e)?;
        Ok(ifp.index())
    }

    /// `ndp -d addr`: `Ok(false)` for a local entry, which ndp(8) spares
    /// silently. Without a scope, the entry on any interface.
    pub fn delete(&self, addr: Ipv6Addr, scope: Option<IfIndex>) -> Result<bool, NdError> {
        let mut shard = self.shard(addr).lock();
        let key = shard.keys().find(|k| k.1 == addr && scope.is_none_or(|s| k.0 == s)).copied();
        let Some(key) = key else {
            return Err(NdError::NotFound(addr));
        };
        if shard[&key].kind == NdEntryKind::Local {
            return Ok(false);
        }
        self.remove_locked(&mut shard, &key);
        Ok(true)
    }

    /// Deletes every entry `keep` refuses; returns them.
    fn remove_where(&self, gone: impl Fn(&(IfIndex, Ipv6Addr), &Entry) -> bool) -> Vec<NdEntry> {
        let mut removed = Vec::new();
        for s in self.shards.iter() {
            let mut shard = s.lock();
            let keys: Vec<_> = shard.iter().filter(|(k, e)| gone(k, e)).map(|(k, _)| *k).collect();
            for k in keys {
                if let Some(e) = self.remove_locked(&mut shard, &k) {
                    removed.push(e.info(k.0, k.1));
                }
            }
        }
        removed.sort_by_key(|e| (e.addr, e.ifindex));
        removed
    }

    /// `ndp -c`: deletes every learned (cloned) entry, neither static nor
    /// local; returns them in address order.
    pub fn delete_dynamic(&self) -> Vec<NdEntry> {
        self.remove_where(|_, e| e.kind == NdEntryKind::Dynamic)
    }

    /// Forgets every entry of an interface being destroyed.
    pub fn remove_interface(&self, ifindex: IfIndex) -> usize {
        self.remove_where(|k, _| k.0 == ifindex).len()
    }

    /// The entries of one address (`ndp -n addr`), on `scope` if given.
    pub fn entry(&self, addr: Ipv6Addr, scope: Option<IfIndex>) -> Vec<NdEntry> {
        let shard = self.shard(addr).lock();
        let mut v: Vec<NdEntry> = shard
            .iter()
            .filter(|(k, _)| k.1 == addr && scope.is_none_or(|s| k.0 == s))
            .map(|(k, e)| e.info(k.0, k.1))
            .collect();
        v.sort_by_key(|e| e.ifindex);
        v
    }

    /// All entries in address order (`ndp -an`).
    pub fn entries(&self) -> Vec<NdEntry> {
        let mut v = Vec::new();
        for s in self.shards.iter() {
            v.extend(s.lock().iter().map(|(k, e)| e.info(k.0, k.1)));
        }
        v.sort_by_key(|e| (e.addr, e.ifindex));
        v
    }
}
