//! Neighbor discovery input (OpenBSD nd6_nbr.c `nd6_ns_input`,
//! `nd6_na_input`; nd6.c `nd6_cache_lladdr`; RFC 4861 §7.2.3–§7.2.5,
//! §7.3.3 and Appendix C). The caller has parsed and validated the message
//! (`NdpRepr::parse` and `NdpRepr::validate`: hop limit 255, option
//! lengths, targets, a DAD solicitation's destination), counting and
//! dropping what fails; these functions take its fields.

use super::dad::DadInput;
use super::{Entry, Nd6Stats, Nd6Table, NdEntryKind, NdState};
use crate::iface::{Dad6State, IfIndex, Interface};
use crate::packet::PacketBuf;
use crate::time::Instant;
use softnet_wire::ethernet::MacAddr;
use softnet_wire::ipv6::ALL_NODES;
use softnet_wire::ndp::{NaFlags, NdpInvalid, NdpRepr};
use std::net::Ipv6Addr;

/// The message a link-layer address came in (nd6_cache_lladdr's `type`
/// and `code`): it decides the entry's router flag.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NdMsg {
    /// A neighbor solicitation (source link-layer address).
    Ns,
    /// A router solicitation: the sender is a host.
    Rs,
    /// A router advertisement: the sender is a router.
    Ra,
    /// A redirect's target; `router`: it names a better router (target
    /// ≠ destination, ND_REDIRECT_ROUTER) rather than the destination
    /// itself on-link. (A forwarding router ignores redirects,
    /// icmp6_redirect_input; this is for when it does not forward.)
    Redirect { router: bool },
}

/// A neighbor advertisement the caller must send (nd6_na_output): on
/// `ifindex`, hop limit 255, from `target` (an address of the interface or
/// a proxied one: then the interface's preferred source), to `dst`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NaReply {
    pub ifindex: IfIndex,
    /// The soliciting node, or all-nodes for a solicitation from ::.
    pub dst: Ipv6Addr,
    /// The Ethernet destination when known (the solicitation's source
    /// link-layer address, or 33:33:00:00:00:01 for all-nodes); `None`:
    /// resolve `dst` through the neighbor cache.
    pub dst_mac: Option<MacAddr>,
    pub target: Ipv6Addr,
    pub flags: NaFlags,
    /// The target link-layer address option's MAC.
    pub tlla: MacAddr,
}

/// What one input message wants done. Reused by a worker: allocated once.
#[derive(Debug, Default)]
pub struct Nd6Input {
    pub advert: Option<NaReply>,
    /// Held frames released by the message: (interface, destination MAC,
    /// frame), in the order they were held.
    pub flushed: Vec<(IfIndex, MacAddr, PacketBuf)>,
    /// The message was about one of our tentative addresses: hand it to
    /// DAD (the stack's `dad_input`). `(interface, address, what)`.
    pub dad: Option<(IfIndex, Ipv6Addr, DadInput)>,
}

impl Nd6Input {
    pub fn new() -> Self {
        Nd6Input { advert: None, flushed: Vec::with_capacity(super::Nd6Config::default().hold_per_entry), dad: None }
    }

    /// Forgets the previous message's results (frames left in `flushed`
    /// are freed).
    pub fn clear(&mut self) {
        self.advert = None;
        self.flushed.clear();
        self.dad = None;
    }
}

impl Nd6Table {
    /// icmp6_input's NDP cases: one parsed NDP message (its checksum
    /// verified by `Icmpv6Repr::parse`) received on `ifp` from `src` to
    /// `dst` with `hop_limit`. Checks RFC 4861's validity rules
    /// (`NdpRepr::validate`; a failure is counted and nothing else
    /// happens), then: a solicitation goes to [`ns_input`](Self::ns_input),
    /// an advertisement to [`na_input`](Self::na_input), a router
    /// solicitation or advertisement caches its sender
    /// ([`cache_lladdr`](Self::cache_lladdr)) and a router solicitation
    /// is queued for the advertiser ([`queue_solicit`](Self::queue_solicit)),
    /// a redirect is ignored when
    /// `forwarding` (icmp6_redirect_input) and caches its target
    /// otherwise. Results go to `out` (cleared first).
    #[allow(clippy::too_many_arguments)]
    pub fn input(
        &self,
        now: Instant,
        ifp: &Interface,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        msg: &NdpRepr<'_>,
        forwarding: bool,
        stats: &Nd6Stats,
        out: &mut Nd6Input,
    ) -> Result<(), NdpInvalid> {
        out.clear();
        if let Err(e) = msg.validate(src, dst, hop_limit) {
            if e == NdpInvalid::HopLimit {
                stats.bad_hop_limit.inc();
            } else {
                stats.invalid.inc();
            }
            return Err(e);
        }
        let lladdr = msg.lladdr()?;
        match *msg {
            NdpRepr::NeighborSolicit { target, .. } => self.ns_input(now, ifp, src, target, lladdr, stats, out),
            NdpRepr::NeighborAdvert { flags, target, .. } => self.na_input(now, ifp, target, flags, lladdr, stats, out),
            NdpRepr::RouterSolicit { .. } => {
                self.cache_lladdr(now, ifp, src, lladdr, NdMsg::Rs, stats, out);
                self.queue_solicit(super::rtadv::RsHeard { ifindex: ifp.index(), src, slla: lladdr }, stats);
            }
            NdpRepr::RouterAdvert { .. } => self.cache_lladdr(now, ifp, src, lladdr, NdMsg::Ra, stats, out),
            NdpRepr::Redirect { target, dest, .. } => {
                if forwarding {
                    stats.redirects_ignored.inc();
                } else {
                    let router = target != dest;
                    self.cache_lladdr(now, ifp, target, lladdr, NdMsg::Redirect { router }, stats, out);
                }
            }
        }
        Ok(())
    }

    /// Releases an entry's held frames to `out` (if_output_mq).
    fn flush_locked(&self, ifindex: IfIndex, e: &mut Entry, out: &mut Nd6Input) {
        let n = e.hold.len();
        let mac = e.mac;
        out.flushed.extend(e.hold.drain(..).map(|p| (ifindex, mac, p)));
        self.unhold(n);
    }

    /// nd6_cache_lladdr: what an NS, RS, RA or redirect says about its
    /// sender `from` on `ifp` (Appendix C's table for messages without
    /// the override flag; static and local entries are not changed).
    #[allow(clippy::too_many_arguments)]
    pub fn cache_lladdr(
        &self,
        now: Instant,
        ifp: &Interface,
        from: Ipv6Addr,
        lladdr: Option<MacAddr>,
        msg: NdMsg,
        stats: &Nd6Stats,
        out: &mut Nd6Input,
    ) {
        if from.is_unspecified() || from.is_multicast() {
            return;
        }
        let key = (ifp.index(), from);
        let mut shard = self.shard(from).lock();
        let is_new = !shard.contains_key(&key);
        if is_new {
            // No entry without a link-layer address unless nd6.c makes
            // one (case 6, NOSTATE); a full table refuses.
            if !self.reserve_entry() {
                stats.cache_full.inc();
                return;
            }
            shard.insert(key, Entry::new(NdEntryKind::Dynamic, NdState::NoState, MacAddr::ZERO));
        }
        let e = shard.get_mut(&key).expect("just made");
        if e.kind != NdEntryKind::Dynamic {
            return; // "do nothing if static ndp is set"
        }
        let olladdr = e.state.is_resolved();
        let llchange = olladdr && lladdr.is_some_and(|m| m != e.mac);
        if llchange {
            tracing::info!("ndp info overwritten for {from} by {} on {}", lladdr.expect("changed"), ifp.name());
        }
        //  new  old ll  llchange
        //   0    n   n   --   (1)
        //   0    y   n   --   (2)
        //   0    n   y   --   (3) * STALE
        //   0    y   y   n    (4) *
        //   0    y   y   y    (5) * STALE
        //   1    --  n   --   (6)   NOSTATE
        //   1    --  y   --   (7) * STALE
        let newstate = if is_new {
            Some(if lladdr.is_some() { NdState::Stale } else { NdState::NoState })
        } else if (!olladdr && lladdr.is_some()) || llchange {
            Some(NdState::Stale)
        } else {
            None
        };
        if let Some(m) = lladdr {
            e.mac = m;
        }
        if let Some(s) = newstate {
            if llchange {
                self.bump();
            }
            e.state = s;
            if s == NdState::Stale {
                e.timer = Some(now + self.config.gc_timer);
                e.asked = 0;
                self.flush_locked(ifp.index(), e, out);
            } else {
                // NOSTATE: nothing to resolve yet; goes unless used.
                e.timer = Some(now + self.config.gc_timer);
            }
        }
        // The router flag (nd6_cache_lladdr's second table).
        match msg {
            NdMsg::Ns => {
                if is_new {
                    e.router = false;
                }
            }
            NdMsg::Redirect { router } => {
                if router {
                    e.router = true;
                } else if is_new {
                    e.router = false;
                }
            }
            NdMsg::Rs => e.router = false,
            NdMsg::Ra => {
                if (!is_new && (olladdr || lladdr.is_some())) || (is_new && lladdr.is_some()) {
                    e.router = true;
                }
            }
        }
    }

    /// nd6_ns_input: a solicitation on `ifp` from `src` for `target` with
    /// source link-layer address `slla`. Answers for the interface's
    /// addresses and for proxy entries on it; learns the sender (RFC 4861
    /// §7.2.3); a solicitation for a tentative address goes to DAD when
    /// it is from :: and is dropped otherwise (RFC 4862 §5.4.3).
    #[allow(clippy::too_many_arguments)]
    pub fn ns_input(
        &self,
        now: Instant,
        ifp: &Interface,
        src: Ipv6Addr,
        target: Ipv6Addr,
        slla: Option<MacAddr>,
        stats: &Nd6Stats,
        out: &mut Nd6Input,
    ) {
        out.clear();
        stats.ns_received.inc();
        if slla == Some(ifp.mac()) {
            return; // our own, looped back
        }
        let dad = src.is_unspecified();
        if !dad && ifp.addr6_state(src).is_some() {
            tracing::warn!("nd6_ns_input: duplicate IP6 address {src}");
            stats.dup_addrs.inc();
            stats.dropped.inc();
            return;
        }
        if !dad && !self.is_neighbor(ifp, src) {
            tracing::debug!("nd6_ns_input: NS packet from non-neighbor {src} on {}", ifp.name());
            stats.dropped.inc();
            return;
        }
        // Ours, or proxied on this interface?
        let (tlla, proxy) = match ifp.addr6_state(target) {
            Some(Dad6State::Tentative) => {
                if dad {
                    out.dad = Some((ifp.index(), target, DadInput::Ns));
                } else {
                    stats.dropped.inc();
                }
                return;
            }
            // A duplicated address is not ours to defend.
            Some(Dad6State::Duplicated) => {
                stats.dropped.inc();
                return;
            }
            Some(Dad6State::Preferred) => (ifp.mac(), false),
            None => match self.proxied_on(ifp.index(), target) {
                Some(mac) => (mac, true),
                None => {
                    stats.dropped.inc();
                    return;
                }
            },
        };
        if dad {
            // Someone tests an address we have: defend it (§7.2.4), to
            // all-nodes, not solicited, without learning anything.
            out.advert = Some(NaReply {
                ifindex: ifp.index(),
                dst: ALL_NODES,
                dst_mac: Some(softnet_wire::ipv6::multicast_mac(ALL_NODES)),
                target,
                flags: NaFlags { router: true, solicited: false, override_: !proxy },
                tlla,
            });
            return;
        }
        self.cache_lladdr(now, ifp, src, slla, NdMsg::Ns, stats, out);
        out.advert = Some(NaReply {
            ifindex: ifp.index(),
            dst: src,
            dst_mac: slla,
            target,
            flags: NaFlags { router: true, solicited: true, override_: !proxy },
            tlla,
        });
    }

    /// The MAC a proxy entry for `addr` on `ifindex` answers with.
    fn proxied_on(&self, ifindex: IfIndex, addr: Ipv6Addr) -> Option<MacAddr> {
        let shard = self.shard(addr).lock();
        shard.get(&(ifindex, addr)).filter(|e| e.proxy && e.state.is_resolved()).map(|e| e.mac)
    }

    /// nd6_na_input: an advertisement on `ifp` for `target` with `flags`
    /// and target link-layer address `tlla` (RFC 4861 §7.2.5, Appendix
    /// C). An advertisement of one of our addresses goes to DAD when the
    /// address is tentative and is logged as a duplicate otherwise; one
    /// for a neighbor without an entry is dropped (no entry is made).
    #[allow(clippy::too_many_arguments)]
    pub fn na_input(
        &self,
        now: Instant,
        ifp: &Interface,
        target: Ipv6Addr,
        flags: NaFlags,
        tlla: Option<MacAddr>,
        stats: &Nd6Stats,
        out: &mut Nd6Input,
    ) {
        out.clear();
        stats.na_received.inc();
        if tlla == Some(ifp.mac()) {
            return; // our own, looped back
        }
        match ifp.addr6_state(target) {
            Some(Dad6State::Tentative) => {
                out.dad = Some((ifp.index(), target, DadInput::Na));
                return;
            }
            Some(_) => {
                tracing::warn!(
                    "duplicate IP6 address {target} advertised by {} on {}",
                    tlla.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                    ifp.name()
                );
                stats.dup_addrs.inc();
                stats.dropped.inc();
                return;
            }
            None => {}
        }
        let ifindex = ifp.index();
        let key = (ifindex, target);
        let mut shard = self.shard(target).lock();
        let Some(e) = shard.get_mut(&key) else {
            stats.dropped.inc();
            return;
        };
        if e.kind != NdEntryKind::Dynamic {
            stats.dropped.inc();
            return; // "do not try to override static entry"
        }
        let reachable = self.reachable_time();
        if !e.state.is_resolved() {
            // INCOMPLETE (or NOSTATE): without an address it says nothing.
            let Some(mac) = tlla else {
                stats.dropped.inc();
                return;
            };
            e.mac = mac;
            if flags.solicited {
                e.state = NdState::Reachable;
                e.timer = Some(now + reachable);
            } else {
                e.state = NdState::Stale;
                e.timer = Some(now + self.config.gc_timer);
            }
            e.router = flags.router;
        } else {
            let llchange = tlla.is_some_and(|m| m != e.mac);
            // override solicit lladdr llchange  action
            //    0      0      n      --     (2c)
            //    0      0      y      n      (2b) L
            //    0      0      y      y      (1)  REACHABLE->STALE
            //    0      1      n      --     (2c)   *->REACHABLE
            //    0      1      y      n      (2b) L *->REACHABLE
            //    0      1      y      y      (1)  REACHABLE->STALE
            //    1      0      n      --     (2a)
            //    1      0      y      n      (2a) L
            //    1      0      y      y      (2a) L *->STALE
            //    1      1      n      --     (2a)   *->REACHABLE
            //    1      1      y      n      (2a) L *->REACHABLE
            //    1      1      y      y      (2a) L *->REACHABLE
            if !flags.override_ && llchange {
                // (1): the address is not taken; only doubt the old one.
                if e.state == NdState::Reachable {
                    e.state = NdState::Stale;
                    e.timer = Some(now + self.config.gc_timer);
                    self.bump();
                }
                return;
            }
            if llchange {
                let m = tlla.expect("changed");
                tracing::info!("ndp info overwritten for {target} by {m} on {}", ifp.name());
                e.mac = m;
                self.bump();
            }
            if flags.solicited {
                e.state = NdState::Reachable;
                e.timer = Some(now + reachable);
            } else if llchange {
                e.state = NdState::Stale;
                e.timer = Some(now + self.config.gc_timer);
            }
            if e.router && !flags.router {
                // The default router list would drop it here (nd6.c's
                // defrtrlist_del); a router keeps none.
                tracing::debug!("nd6_na_input: {target} is no longer a router");
            }
            e.router = flags.router;
        }
        e.asked = 0;
        self.flush_locked(ifindex, e, out);
    }
}
