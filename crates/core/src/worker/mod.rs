//! Workers: run-to-completion packet processing in batches.
//!
//! A worker owns a packet pool, a receive batch, per-interface transmit
//! staging and its own counters. Once per batch it reads the clock and loads
//! the interface, route and filter snapshots; every packet of the batch is
//! processed against those, then staged frames go out per interface. The
//! data path takes no global lock and allocates nothing in the steady state.
//!
//! The path (OpenBSD names in brackets), one module per BSD file so that
//! the IPv6 path can be a sibling of the IPv4 one (ip6_input, ip6_forward,
//! icmp6 beside ip_input, ip_forward, icmp):
//! `ether` (if_ethersubr.c, ARP glue of if_ether.c), `ip_input`
//! (ip_input.c), `pf_hook` (pf_test's call sites over batches), `icmp`
//! (ip_icmp.c), `transport` (udp/tcp input for the router itself),
//! `ip_forward` (ip_forward), `ip_output` (ip_output.c), `options`
//! (ip_dooptions), `pf_route` (pf.c pf_route); this file holds the worker
//! itself, its batch loop and transmit staging.
//!
//! IPv6 (netinet6): `ip6_input` (ip6_input.c), `icmp6` (icmp6.c),
//! `ip6_forward` (ip6_forward.c), `ip6_output` (ip6_output.c with
//! nd6_resolve), the same shapes with the same pf hooks (pf in over
//! `ip6q`, pf out over `fwd6` and in `ip6_output`).
//!
//! ether_input → arp_input | ip_input [ipv4_input] → pf in → local
//! delivery [ip_ours] or ip_forward → pf out → if_output (fragment,
//! [ip_fragment]) → ether_out [ether_output + arpresolve] → staging.
//! What the router sends itself (echo replies, ICMP errors, RSTs) goes
//! ip_output → pf out on the outgoing interface → the same way out; the
//! filter's own replies (`mflags::PF_GENERATED`) skip pf out.

use crate::arp::{ArpInput, ArpResolve, ArpWorkerCache};
use crate::ether::{build_arp_frame, prepend_ipv4_header, set_dst};
use crate::filter::{BufferSource, Decision, Direction, RouteDecision};
use crate::iface::{IfIndex, IfSnapshot, Interface};
use crate::packet::{csum_flags, mflags, PacketBuf, PacketMeta, PacketPool};
use crate::reass::ReassResult;
use crate::route::{Nhop, RouteFlags, RouteSnapshot, RouteSnapshot6};
use crate::stack::{FilterSlot, Stack};
use crate::stats::StackStats;
use crate::time::{Clock, Instant};
use softnet_wire::arp::{ArpPacket, ArpRepr};
use softnet_wire::ethernet::{EtherType, EthernetFrame, MacAddr, HEADER_LEN};
use softnet_wire::icmpv4::{self, DstUnreachable, Icmpv4Repr, TimeExceeded};
use softnet_wire::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod divert;
mod divpkt;
mod ether;
mod hostif;
mod icmp;
mod icmp6;
mod ip6_forward;
mod ip6_input;
mod ip6_output;
mod ip_forward;
mod ip_input;
mod ip_output;
mod lro;
mod options;
mod pf_hook;
mod pf_route;
mod pf_route6;
mod sockio;
mod transport;
mod transport6;

use ether::ArpGlue;
use icmp::{IcmpErr, IcmpState};
use icmp6::{Icmp6Err, Icmp6State};
use ip_forward::{FwdInfo, FwdQueue};
use options::record_options;
use pf_hook::{decisions_for, HookScratch};

/// Most frames received from one queue in one batch.
pub const BATCH: usize = 64;
/// Frames staged for one interface before it is flushed early.
const STAGE_MAX: usize = 256;
use softnet_wire::ipv4::MIN_HEADER_LEN as IPV4_MIN_HEADER;

/// Everything a packet is processed against during one batch.
struct Ctx<'a> {
    stack: &'a Stack,
    ifs: &'a IfSnapshot,
    rt: &'a RouteSnapshot,
    /// The IPv6 routes of table 0 (none while it has no IPv6 snapshot).
    rt6: Option<&'a RouteSnapshot6>,
    stats: &'a StackStats,
    filter: Option<&'a FilterSlot>,
    now: Instant,
    /// The batch's time for IP Timestamp options (ms since midnight UT).
    ts_ms: u32,
}

/// A worker's private state.
struct WorkerState {
    id: usize,
    pool: PacketPool,
    /// A few 64 KiB buffers for datagrams the filter reassembles and for
    /// TCP super-segments (`sockio`, TSO).
    large_pool: PacketPool,
    /// The segments `ip_output::gso_out` cut from a super-segment.
    gso_scratch: Vec<PacketBuf>,
    /// Segments of a received super-segment that is not for a local
    /// connection (`lro`).
    lro_scratch: Vec<PacketBuf>,
    rx: Vec<PacketBuf>,
    /// Frames to send, per interface index.
    tx: Vec<Vec<PacketBuf>>,
    /// Interface indices with staged frames.
    tx_pending: Vec<IfIndex>,
    /// The Ethernet layer's ARP cache and scratch (`ether`).
    arp: ArpGlue,
    /// IPv4 packets of the batch being received, waiting for pf in
    /// (`ip_input`).
    ipq: Vec<Option<PacketBuf>>,
    /// IPv6 packets of the batch being received, waiting for pf in
    /// (`ip6_input`).
    ip6q: Vec<Option<PacketBuf>>,
    /// The filter hooks' scratch (`pf_hook`).
    hook: HookScratch,
    /// Forwarded packets waiting for pf out (`ip_forward`).
    fwd: FwdQueue,
    /// Forwarded IPv6 packets waiting for pf out (`ip6_forward`).
    fwd6: ip6_forward::Fwd6Queue,
    /// ICMP's rate limit (`icmp`).
    icmp: IcmpState,
    /// The host twins' staging and pending questions (`hostif`).
    host: hostif::HostGlue,
    /// ICMPv6's rate limit and the neighbor cache glue (`icmp6`,
    /// `ip6_output`).
    icmp6: Icmp6State,
    /// Connections whose timers are due (`sockio`), reused.
    sock_due: Vec<Arc<crate::sock::TcpConn>>,
    /// SYN,ACKs the SYN cache sends again (`sockio`), reused.
    sock_synacks: Vec<(crate::sock::ConnKey, TcpRepr)>,
    /// The filter's link (`PacketMeta::pf_link`) of the last packet of
    /// the router's own that pf out passed, `NO_PF_LINK` if none since it
    /// was reset: how a connection learns its state (`sock::pflink`).
    pf_out_link: u64,
    /// Connections whose waiters are woken at the end of the round
    /// (`sockio`), reused.
    sock_wake: Vec<Arc<crate::sock::TcpConn>>,
    /// Listeners whose accept() is to be woken at the end of the round
    /// (`sockio::sock_wake_all`), reused.
    accept_wake: Vec<Arc<crate::sock::TcpListen>>,
    /// Connections whose output waits for the end of the round's input
    /// (`sockio::tcp_emit_deferred`), reused.
    sock_emit: Vec<Arc<crate::sock::TcpConn>>,
    /// The connection the last TCP segment went to (`sockio::tcp_pcb`).
    tcp_last: Option<(crate::sock::ConnKey, std::sync::Weak<crate::sock::TcpConn>)>,
}

/// `WorkerState::pf_out_link` when pf out passed nothing since the reset.
pub(super) const NO_PF_LINK: u64 = u64::MAX;

/// One worker thread's handle.
pub struct Worker {
    stack: Arc<Stack>,
    clock: Arc<dyn Clock>,
    st: WorkerState,
    /// This worker's generator is installed on the thread that polls it.
    rng_installed: bool,
}

/// Size of a buffer that holds any IPv4 datagram (reassembly), with
/// headroom for the Ethernet header.
pub const LARGE_BUF_SIZE: usize = 65535 + crate::packet::HEADROOM + 64;
/// Large buffers per worker.
const LARGE_POOL: usize = 16;

impl Worker {
    /// A worker with id `id` (0-based; it uses queue `id` of every
    /// interface). Allocates its pool and staging now.
    pub fn new(id: usize, stack: Arc<Stack>, clock: Arc<dyn Clock>) -> Worker {
        let cfg = &stack.config;
        let workers = cfg.workers.max(1) as u64;
        let rate = (cfg.icmp_err_rate as u64).div_ceil(workers);
        let burst = (cfg.icmp_err_burst as u64).div_ceil(workers);
        let st = WorkerState {
            id,
            pool: PacketPool::with_spill(cfg.pool_size, cfg.buf_size, stack.spill.clone()),
            large_pool: PacketPool::new(LARGE_POOL, LARGE_BUF_SIZE),
            gso_scratch: Vec::with_capacity(64),
            lro_scratch: Vec::with_capacity(64),
            rx: Vec::with_capacity(BATCH),
            tx: (0..64).map(|_| Vec::with_capacity(STAGE_MAX)).collect(),
            tx_pending: Vec::with_capacity(64),
            arp: ArpGlue::new(),
            ipq: Vec::with_capacity(BATCH),
            ip6q: Vec::with_capacity(BATCH),
            hook: HookScratch::new(),
            fwd: FwdQueue::new(),
            fwd6: ip6_forward::Fwd6Queue::new(),
            icmp: IcmpState::new(rate, burst),
            host: hostif::HostGlue::new(),
            icmp6: Icmp6State::new(rate, burst),
            sock_due: Vec::with_capacity(256),
            sock_synacks: Vec::with_capacity(64),
            pf_out_link: NO_PF_LINK,
            sock_wake: Vec::with_capacity(256),
            accept_wake: Vec::with_capacity(8),
            sock_emit: Vec::with_capacity(64),
            tcp_last: None,
        };
        Worker { stack, clock, st, rng_installed: false }
    }

    pub fn id(&self) -> usize {
        self.st.id
    }

    /// Buffers left in this worker's pool.
    pub fn pool_available(&self) -> usize {
        self.st.pool.available()
    }

    /// One round: a batch from every interface's queue for this worker,
    /// processed to completion, then transmitted. Returns frames received.
    pub fn poll(&mut self) -> usize {
        let now = self.clock.now();
        let stack = &*self.stack;
        // The thread's random generator: this worker's, seeded from the
        // stack's entropy at its first batch, stirred at every one after
        // (crate::rng).
        if self.rng_installed {
            crate::rng::stir(now, &*stack.entropy, self.st.id);
        } else {
            crate::rng::install(crate::rng::WorkerRng::from_seed(stack.entropy.seed(self.st.id), now));
            self.rng_installed = true;
        }
        let ifs = stack.ifaces.load();
        let Some(rt) = stack.routes.snapshot(0) else { return 0 };
        let rt6 = stack.routes.snapshot6(0);
        let filter = stack.filter.load();
        let cx = Ctx {
            stack,
            ifs: &ifs,
            rt: &rt,
            rt6: rt6.as_deref().map(|r| &**r),
            stats: stack.stats.get(self.st.id),
            filter: filter.as_deref(),
            now,
            ts_ms: self.clock.ms_since_midnight_ut(),
        };
        let n = self.st.poll(&cx);
        stack.buffers.get(self.st.id).publish(&self.st.pool, &self.st.large_pool);
        n
    }

    /// Runs until `stop` is set. `idle` is called after a round that found
    /// nothing to do, with the number of consecutive idle rounds; it may
    /// spin, sleep, or poll(2) on the links' descriptors.
    pub fn run(mut self, stop: &AtomicBool, mut idle: impl FnMut(&Stack, usize, u32)) {
        let mut idle_rounds = 0u32;
        while !stop.load(Ordering::Relaxed) {
            if self.poll() == 0 {
                idle_rounds = idle_rounds.saturating_add(1);
                idle(&self.stack, self.st.id, idle_rounds);
            } else {
                idle_rounds = 0;
            }
        }
    }
}

/// A default idle strategy: spin briefly, then yield, then sleep 50 µs.
pub fn idle_backoff(_: &Stack, _: usize, rounds: u32) {
    if rounds < 64 {
        std::hint::spin_loop();
    } else if rounds < 256 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

impl WorkerState {
    fn poll(&mut self, cx: &Ctx) -> usize {
        let mut total = 0;
        for ifp in cx.ifs.iter() {
            let n = {
                let Some(mut q) = ifp.queue(self.id).try_lock() else { continue };
                q.recv_mixed(&mut self.pool, &mut self.large_pool, &mut self.rx, BATCH)
            };
            if n == 0 {
                continue;
            }
            total += n;
            let mut rx = std::mem::take(&mut self.rx);
            // Link and IP input checks for the whole batch; the IPv4
            // packets that pass them wait in `ipq` (IPv6: `ip6q`) for
            // the filter's in hook, which takes them as one batch.
            for p in rx.drain(..) {
                self.ether_input(cx, ifp, p);
            }
            self.rx = rx;
            self.ip_input_batch(cx, ifp);
            self.ip6_input_batch(cx, ifp);
            // What the batch punted goes to the host now, not after the
            // other queues' reads: the host answers sooner.
            self.flush_host(cx);
        }
        self.tcp_emit_deferred(cx);
        total += self.sock_poll(cx);
        total += self.host_poll(cx);
        self.arp_housekeeping(cx);
        self.nd6_housekeeping(cx);
        self.flush_tx(cx);
        self.flush_host(cx);
        self.sock_wake_all();
        total
    }

    // ---- transmit staging ------------------------------------------------

    #[inline]
    fn stage(&mut self, cx: &Ctx, ifindex: IfIndex, p: PacketBuf) {
        let i = ifindex.as_usize();
        if i >= self.tx.len() {
            // A new interface index: grows once, not per packet.
            self.tx.resize_with(i + 1, || Vec::with_capacity(STAGE_MAX));
        }
        if self.tx[i].is_empty() {
            self.tx_pending.push(ifindex);
        }
        self.tx[i].push(p);
        if self.tx[i].len() >= STAGE_MAX {
            self.flush_one(cx, ifindex);
        }
    }

    fn flush_tx(&mut self, cx: &Ctx) {
        while let Some(idx) = self.tx_pending.pop() {
            self.flush_one(cx, idx);
        }
    }

    fn flush_one(&mut self, cx: &Ctx, idx: IfIndex) {
        let frames = &mut self.tx[idx.as_usize()];
        if frames.is_empty() {
            return;
        }
        let Some(ifp) = cx.ifs.get(idx) else {
            // The interface went away while frames were staged.
            cx.stats.ip.odropped.add(frames.len() as u64);
            for p in frames.drain(..) {
                match p.capacity() == self.pool.buf_size() {
                    true => self.pool.free(p),
                    false => self.large_pool.free(p),
                }
            }
            return;
        };
        let st = ifp.stats.get(self.id);
        let n = frames.len();
        let bytes = priq_order(frames);
        let sent = match ifp.tso_max() {
            0 => ifp.queue(self.id).lock().send(&mut self.pool, frames),
            // TCP super-segments in large buffers among them.
            _ => ifp.queue(self.id).lock().send_mixed(&mut self.pool, &mut self.large_pool, frames),
        };
        st.opackets.add(sent as u64);
        st.obytes.add(if sent == n { bytes as u64 } else { 0 });
        st.oerrors.add((n - sent) as u64);
        // `send` drained the vector; it stays staged-free.
        self.tx_pending.retain(|i| *i != idx);
    }

    #[inline]
    fn drop_in(&mut self, ifp: &Interface, p: PacketBuf) {
        ifp.stats.get(self.id).ierrors.inc();
        self.free(p);
    }

    /// Returns a buffer to the pool it came from.
    #[inline]
    fn free(&mut self, p: PacketBuf) {
        if p.capacity() == self.pool.buf_size() {
            self.pool.free(p)
        } else {
            self.large_pool.free(p)
        }
    }

    /// The IP ID of a packet the router sends: random (as OpenBSD's
    /// ip_randomid), so that it tells nothing about the router's traffic.
    #[inline]
    fn next_ip_id(&mut self) -> u16 {
        crate::rng::random_u16()
    }
}

/// The frames staged for one interface in the order OpenBSD's priq
/// dequeues them: higher `PacketMeta::prio` first, in arrival order
/// within a priority (a stable sort, no allocation for a staging's worth
/// of frames), so that what the link cannot take is the lowest priority.
/// Frames of one priority (the usual case) are left as they are. Returns
/// their bytes.
#[inline]
fn priq_order(frames: &mut [PacketBuf]) -> usize {
    let (mut bytes, mut hi, mut lo) = (0usize, 0u8, u8::MAX);
    for p in frames.iter() {
        bytes += p.len();
        let pr = p.meta.prio();
        hi = hi.max(pr);
        lo = lo.min(pr);
    }
    if hi > lo {
        frames.sort_by_key(|p| std::cmp::Reverse(p.meta.prio()));
    }
    bytes
}

#[cfg(test)]
mod priq_tests {
    use super::*;

    #[test]
    fn higher_priorities_go_first_in_arrival_order_within_one() {
        let mut frames: Vec<PacketBuf> = [(1u8, 3u8), (2, 7), (3, 0), (4, 7), (5, 3)]
            .iter()
            .map(|&(tag, prio)| {
                let mut p = PacketBuf::from_slice(&[tag; 10]);
                p.meta.set_prio(prio);
                p
            })
            .collect();
        assert_eq!(priq_order(&mut frames), 50);
        let order: Vec<(u8, u8)> = frames.iter().map(|p| (p.data()[0], p.meta.prio())).collect();
        assert_eq!(order, [(2, 7), (4, 7), (1, 3), (5, 3), (3, 0)]);
    }

    #[test]
    fn a_default_priority_is_what_zeroed_metadata_has() {
        let mut p = PacketBuf::from_slice(&[0; 4]);
        assert_eq!(p.meta.prio(), crate::packet::prio::IFQ_DEFPRIO);
        p.meta.flags |= crate::packet::mflags::PF_GENERATED;
        p.meta.set_prio(0);
        assert_eq!((p.meta.prio(), p.meta.flags & crate::packet::mflags::PF_GENERATED != 0), (0, true));
        p.meta.set_prio(7);
        assert_eq!(p.meta.prio(), 7);
        assert_eq!(std::mem::size_of::<crate::packet::PacketMeta>(), 48, "the priority did not grow the metadata");
    }
}
