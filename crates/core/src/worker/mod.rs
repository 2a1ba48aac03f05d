//! Workers: run-to-completion packet processing in batches.
//!
//! A worker owns a packet pool, a receive batch, per-interface transmit
//! staging and its own counters. Once per batch it reads the clock and loads
//! the interface, route and filter snapshots; every packet of the batch is
//! processed against those, then staged frames go out per interface. The
//! data path takes no global lock and allocates nothing in the steady state.
//!
//! The path (OpenBSD names in brackets):
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
use crate::route::{Route, RouteFlags, RouteSnapshot};
use crate::stack::{FilterSlot, Stack};
use crate::stats::StackStats;
use crate::time::{Clock, Instant};
use softnet_wire::arp::{ArpPacket, ArpRepr};
use softnet_wire::checksum;
use softnet_wire::ethernet::{EtherType, EthernetFrame, MacAddr, HEADER_LEN};
use softnet_wire::icmpv4::{self, DstUnreachable, Icmpv4Repr, TimeExceeded};
use softnet_wire::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod options;
mod output;
mod pf_route;

use options::record_options;

/// Most frames received from one queue in one batch.
pub const BATCH: usize = 64;
/// Frames staged for one interface before it is flushed early.
const STAGE_MAX: usize = 256;
/// RFC 1812 §4.3.2.3: an ICMP error quotes as much of the original as fits
/// in 576 bytes.
const ICMP_ERROR_MAX: usize = 576;
const IPV4_MIN_HEADER: usize = 20;
const ICMP_HEADER_LEN: usize = 8;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER_LEN: usize = 8;
/// TTL of ICMP errors and replies the router reflects (OpenBSD icmp_reflect
/// uses MAXTTL).
const ICMP_REFLECT_TTL: u8 = 255;

/// Why `icmp_error` is called: type, code and the extra field.
#[derive(Copy, Clone, Debug)]
enum IcmpErr {
    Unreach(DstUnreachable, u16),
    TimeExceeded,
    ParamProblem(u8),
    Redirect(Ipv4Addr),
}

/// Token bucket for ICMP errors, refilled from the batch clock.
struct TokenBucket {
    /// Tokens times 1e9, so that refills need no division.
    tokens_ns: u64,
    capacity_ns: u64,
    rate: u64,
    last: Instant,
}

impl TokenBucket {
    const ONE: u64 = 1_000_000_000;
    fn new(rate: u64, burst: u64) -> Self {
        let capacity_ns = burst.max(1) * Self::ONE;
        TokenBucket { tokens_ns: capacity_ns, capacity_ns, rate, last: Instant::ZERO }
    }
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.as_nanos().saturating_sub(self.last.as_nanos());
        self.last = now;
        self.tokens_ns = self.tokens_ns.saturating_add(elapsed.saturating_mul(self.rate)).min(self.capacity_ns);
        if self.tokens_ns >= Self::ONE {
            self.tokens_ns -= Self::ONE;
            true
        } else {
            false
        }
    }
}

/// Everything a packet is processed against during one batch.
struct Ctx<'a> {
    stack: &'a Stack,
    ifs: &'a IfSnapshot,
    rt: &'a RouteSnapshot,
    stats: &'a StackStats,
    filter: Option<&'a FilterSlot>,
    now: Instant,
    /// The batch's time for IP Timestamp options (ms since midnight UT).
    ts_ms: u32,
}

/// `v` as `n` decisions for a filter call (capacity kept: no allocation
/// once it has held a batch).
fn decisions_for(v: &mut Vec<Decision>, n: usize) -> &mut [Decision] {
    v.clear();
    v.resize(n, Decision::Consumed);
    v
}

/// Where a forwarded packet waiting for pf out goes (`ip_forward`'s
/// decisions, for `forward_out`).
struct FwdInfo {
    out: IfIndex,
    in_if: IfIndex,
    next_hop: Ipv4Addr,
    mtu: u32,
}

/// A worker's private state.
struct WorkerState {
    id: usize,
    pool: PacketPool,
    /// A few 64 KiB buffers for datagrams the filter reassembles.
    large_pool: PacketPool,
    rx: Vec<PacketBuf>,
    /// Frames to send, per interface index.
    tx: Vec<Vec<PacketBuf>>,
    /// Interface indices with staged frames.
    tx_pending: Vec<IfIndex>,
    arp_cache: ArpWorkerCache,
    arp_out: ArpInput,
    /// Scratch for what ARP hands back each batch (capacity reserved).
    arp_dropped: Vec<PacketBuf>,
    arp_requests: Vec<crate::arp::ArpRequest>,
    /// Packets the filter asked to send (block return).
    replies: Vec<PacketBuf>,
    /// IPv4 packets of the batch being received, waiting for pf in; what
    /// the filter passed; what it blocked.
    ipq: Vec<Option<PacketBuf>>,
    decisions: Vec<Decision>,
    /// Forwarded packets of the batch waiting for pf out, and where each
    /// goes.
    fwdq: Vec<Option<PacketBuf>>,
    fwdinfo: Vec<FwdInfo>,
    icmp_bucket: TokenBucket,
}

/// One worker thread's handle.
pub struct Worker {
    stack: Arc<Stack>,
    clock: Arc<dyn Clock>,
    st: WorkerState,
    /// This worker's generator is installed on the thread that polls it.
    rng_installed: bool,
}

/// The worker's pools as the filter sees them.
struct Pools<'a> {
    small: &'a mut PacketPool,
    large: &'a mut PacketPool,
}

impl BufferSource for Pools<'_> {
    fn alloc(&mut self) -> Option<PacketBuf> {
        self.small.alloc()
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        self.large.alloc()
    }
    fn free(&mut self, p: PacketBuf) {
        if p.capacity() == self.small.buf_size() {
            self.small.free(p)
        } else {
            self.large.free(p)
        }
    }
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
            pool: PacketPool::new(cfg.pool_size, cfg.buf_size),
            large_pool: PacketPool::new(LARGE_POOL, LARGE_BUF_SIZE),
            rx: Vec::with_capacity(BATCH),
            tx: (0..64).map(|_| Vec::with_capacity(STAGE_MAX)).collect(),
            tx_pending: Vec::with_capacity(64),
            arp_cache: ArpWorkerCache::new(),
            arp_out: ArpInput::new(),
            arp_dropped: Vec::with_capacity(256),
            arp_requests: Vec::with_capacity(64),
            replies: Vec::with_capacity(16),
            ipq: Vec::with_capacity(BATCH),
            decisions: Vec::with_capacity(BATCH),
            fwdq: Vec::with_capacity(BATCH),
            fwdinfo: Vec::with_capacity(BATCH),
            icmp_bucket: TokenBucket::new(rate, burst),
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
        let filter = stack.filter.load();
        let cx = Ctx {
            stack,
            ifs: &ifs,
            rt: &rt,
            stats: stack.stats.get(self.st.id),
            filter: filter.as_deref(),
            now,
            ts_ms: self.clock.ms_since_midnight_ut(),
        };
        self.st.poll(&cx)
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
                q.recv(&mut self.pool, &mut self.rx, BATCH)
            };
            if n == 0 {
                continue;
            }
            total += n;
            let mut rx = std::mem::take(&mut self.rx);
            // Link and IP input checks for the whole batch; the IPv4
            // packets that pass them wait in `ipq` for the filter's in
            // hook, which takes them as one batch.
            for p in rx.drain(..) {
                self.ether_input(cx, ifp, p);
            }
            self.rx = rx;
            self.ip_input_batch(cx, ifp);
        }
        self.arp_housekeeping(cx);
        self.flush_tx(cx);
        total
    }

    /// What ARP left for this worker during the batch: frames it gave up on
    /// (returned to the pool) and refresh requests to broadcast.
    fn arp_housekeeping(&mut self, cx: &Ctx) {
        let mut dropped = std::mem::take(&mut self.arp_dropped);
        dropped.extend(self.arp_cache.drain_dropped());
        for p in dropped.drain(..) {
            cx.stats.ip.odropped.inc();
            self.free(p);
        }
        self.arp_dropped = dropped;
        let mut requests = std::mem::take(&mut self.arp_requests);
        requests.extend(self.arp_cache.drain_requests());
        for req in requests.drain(..) {
            if let Some(ifp) = cx.ifs.get(req.ifindex) {
                self.send_arp_request(cx, ifp, &req.repr);
            }
        }
        self.arp_requests = requests;
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
                self.pool.free(p);
            }
            return;
        };
        let st = ifp.stats.get(self.id);
        let n = frames.len();
        let bytes: usize = frames.iter().map(|p| p.len()).sum();
        let sent = ifp.queue(self.id).lock().send(&mut self.pool, frames);
        st.opackets.add(sent as u64);
        st.obytes.add(if sent == n { bytes as u64 } else { 0 });
        st.oerrors.add((n - sent) as u64);
        // `send` drained the vector; it stays staged-free.
        self.tx_pending.retain(|i| *i != idx);
    }

    // ---- Ethernet --------------------------------------------------------

    fn ether_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf) {
        let ist = ifp.stats.get(self.id);
        ist.ipackets.inc();
        ist.ibytes.add(p.len() as u64);
        let es = &cx.stats.ether;
        if !ifp.is_up() {
            ist.idrops.inc();
            return self.free(p);
        }
        let Ok(frame) = EthernetFrame::new_checked(p.data()) else {
            es.runts.inc();
            ist.ierrors.inc();
            return self.free(p);
        };
        let dst = frame.dst();
        let link_bcast = dst.is_multicast();
        if !link_bcast && dst != ifp.mac() {
            es.not_for_us.inc();
            return self.free(p);
        }
        if frame.vlan().is_some() {
            es.vlan_dropped.inc();
            ist.idrops.inc();
            return self.free(p);
        }
        let ethertype = frame.ethertype();
        p.meta.rcvif = ifp.index();
        match ethertype {
            EtherType::IPV4 => {
                let _ = p.pull_front(HEADER_LEN);
                self.ip_input(cx, ifp, p, link_bcast);
            }
            EtherType::ARP => self.arp_input(cx, ifp, p),
            EtherType::IPV6 => {
                es.ipv6_dropped.inc();
                ist.idrops.inc();
                self.free(p);
            }
            _ => {
                es.unknown_type.inc();
                ist.idrops.inc();
                self.free(p);
            }
        }
    }

    fn arp_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf) {
        let arps = &cx.stats.arp;
        let repr = match ArpPacket::new_checked(&p.data()[HEADER_LEN..]).and_then(|a| ArpRepr::parse(&a)) {
            Ok(r) => r,
            Err(_) => {
                arps.dropped_bad.inc();
                ifp.stats.get(self.id).ierrors.inc();
                return self.free(p);
            }
        };
        self.arp_out.clear();
        cx.stack.arp.input(cx.now, cx.ifs, ifp, &repr, arps, &mut self.arp_out);
        if let Some(reply) = self.arp_out.reply.take() {
            // Reuse the request's buffer for the reply.
            if build_arp_frame(&mut p, ifp.mac(), reply.target_hw, &reply).is_ok() {
                arps.replies_sent.inc();
                self.stage(cx, ifp.index(), p);
            } else {
                self.free(p);
            }
        } else {
            self.free(p);
        }
        let mut flushed = std::mem::take(&mut self.arp_out.flushed);
        for (ifindex, mac, mut frame) in flushed.drain(..) {
            set_dst(&mut frame, mac);
            self.stage(cx, ifindex, frame);
        }
        self.arp_out.flushed = flushed;
    }

    // ---- IPv4 input ------------------------------------------------------

    fn ip_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf, link_bcast: bool) {
        let ips = &cx.stats.ip;
        ips.total.inc();
        let data = p.data();
        if data.len() < IPV4_MIN_HEADER {
            ips.toosmall.inc();
            return self.drop_in(ifp, p);
        }
        let ip = Ipv4Packet::new_unchecked(data);
        if ip.version() != 4 {
            ips.badvers.inc();
            return self.drop_in(ifp, p);
        }
        let hlen = ip.header_len() as usize;
        if hlen < IPV4_MIN_HEADER || hlen > data.len() {
            ips.badhlen.inc();
            return self.drop_in(ifp, p);
        }
        if checksum::checksum(&data[..hlen]) != 0 {
            ips.badsum.inc();
            return self.drop_in(ifp, p);
        }
        let total = ip.total_len() as usize;
        if total < hlen {
            ips.badlen.inc();
            return self.drop_in(ifp, p);
        }
        if total > data.len() {
            ips.tooshort.inc();
            return self.drop_in(ifp, p);
        }
        let src = ip.src();
        let is_frag = ip.more_frags() || ip.frag_offset() != 0;
        // Trim Ethernet padding.
        let _ = p.set_len(total);
        p.meta.csum |= csum_flags::IP_HDR_OK;
        if src.is_multicast() || src.is_broadcast() || (src.is_loopback()) {
            ips.badaddr.inc();
            return self.drop_in(ifp, p);
        }
        if hlen > IPV4_MIN_HEADER {
            if let Err(e) = ipv4::check_options(&p.data()[IPV4_MIN_HEADER..hlen]) {
                ips.badoptions.inc();
                let pointer = (IPV4_MIN_HEADER + e.offset()) as u8;
                self.icmp_error(cx, Some(ifp), &p, link_bcast, IcmpErr::ParamProblem(pointer));
                return self.drop_in(ifp, p);
            }
            if ipv4::has_source_route(&p.data()[IPV4_MIN_HEADER..hlen]) {
                // OpenBSD's default (net.inet.ip.sourceroute=0): refuse.
                ips.badoptions.inc();
                self.icmp_error(cx, Some(ifp), &p, link_bcast, IcmpErr::Unreach(DstUnreachable::SrcRouteFailed, 0));
                return self.drop_in(ifp, p);
            }
        }
        if is_frag {
            ips.fragments.inc();
        }

        if cx.filter.is_none() {
            return self.ip_input_filtered(cx, ifp, p, link_bcast);
        }
        // pf in takes the batch's packets together (`ip_input_batch`).
        if link_bcast {
            p.meta.flags |= mflags::LINK_BCAST;
        }
        self.ipq.push(Some(p));
    }

    /// The rest of IP input for the batch `ip_input` left in `ipq`: pf in
    /// over the whole batch, then delivery or forwarding per packet, then
    /// pf out over the forwarded packets (`forward_batch`).
    fn ip_input_batch(&mut self, cx: &Ctx, ifp: &Arc<Interface>) {
        if self.ipq.is_empty() {
            return;
        }
        let Some(f) = cx.filter else { return };
        let mut ipq = std::mem::take(&mut self.ipq);
        let mut decisions = std::mem::take(&mut self.decisions);
        let all = decisions_for(&mut decisions, ipq.len());
        self.filter_batch(cx, f, Direction::In, ifp, &mut ipq, all);
        for (slot, &d) in ipq.iter_mut().zip(decisions.iter()) {
            if let Some(mut p) = self.decided(cx, slot, d) {
                if p.meta.pf_route != RouteDecision::None {
                    // route-to, reply-to, dup-to (pf_route after pf in).
                    p = match self.pf_route_in(cx, ifp, p) {
                        Some(p) => p,
                        None => continue,
                    };
                }
                let link_bcast = p.meta.flags & mflags::LINK_BCAST != 0;
                self.ip_input_filtered(cx, ifp, p, link_bcast);
            }
        }
        ipq.clear();
        self.ipq = ipq;
        self.decisions = decisions;
        self.forward_batch(cx);
    }

    /// Runs the filter over a batch in place (`decisions` as long as
    /// `pkts`); the replies it asks for are sent.
    fn filter_batch(
        &mut self,
        cx: &Ctx,
        f: &FilterSlot,
        dir: Direction,
        ifp: &Interface,
        pkts: &mut [Option<PacketBuf>],
        decisions: &mut [Decision],
    ) {
        let mut replies = std::mem::take(&mut self.replies);
        let mut src = Pools { small: &mut self.pool, large: &mut self.large_pool };
        f.0.test_batch(self.id, cx.now, dir, ifp, pkts, decisions, &mut src, &mut replies);
        for r in replies.drain(..) {
            self.ip_output(cx, r);
        }
        self.replies = replies;
    }

    /// The packet in `slot` if the filter passed it; a blocked one is
    /// counted and freed.
    #[inline]
    fn decided(&mut self, cx: &Ctx, slot: &mut Option<PacketBuf>, d: Decision) -> Option<PacketBuf> {
        let p = slot.take()?;
        match d {
            Decision::Pass => Some(p),
            Decision::Drop => {
                cx.stats.ip.filtered.inc();
                self.free(p);
                None
            }
            // Consumed empties its slot; a filter that says so and leaves
            // a buffer gets it freed, not forwarded.
            Decision::Consumed => {
                self.free(p);
                None
            }
        }
    }

    /// pf out over the packets `ip_forward` left in `fwdq`, one filter
    /// call per run of packets leaving by the same interface, then each
    /// goes on to `forward_out`.
    fn forward_batch(&mut self, cx: &Ctx) {
        let Some(f) = cx.filter else { return };
        if self.fwdq.is_empty() {
            return;
        }
        let mut fwdq = std::mem::take(&mut self.fwdq);
        let mut info = std::mem::take(&mut self.fwdinfo);
        let mut decisions = std::mem::take(&mut self.decisions);
        let mut start = 0;
        while start < info.len() {
            let out_idx = info[start].out;
            let end = info[start..].iter().position(|i| i.out != out_idx).map_or(info.len(), |n| start + n);
            // The snapshot is the batch's: interfaces stay as they were.
            let out = cx.ifs.get(out_idx).expect("forwarded this batch");
            let run = decisions_for(&mut decisions, end - start);
            self.filter_batch(cx, f, Direction::Out, out, &mut fwdq[start..end], run);
            for ((slot, &d), i) in fwdq[start..end].iter_mut().zip(decisions.iter()).zip(&info[start..end]) {
                if let Some(mut p) = self.decided(cx, slot, d) {
                    let in_ifp = cx.ifs.get(i.in_if).expect("received this batch");
                    if p.meta.pf_route != RouteDecision::None {
                        // pf_route after pf out: re-routed, or copied.
                        p = match self.pf_route_out(cx, Some(in_ifp), p) {
                            Some(p) => p,
                            None => continue,
                        };
                    }
                    self.forward_out(cx, out, i.next_hop, i.mtu as usize, in_ifp, p);
                }
            }
            start = end;
        }
        fwdq.clear();
        info.clear();
        self.fwdq = fwdq;
        self.fwdinfo = info;
        self.decisions = decisions;
    }

    /// IP input after pf in: local delivery or forwarding.
    fn ip_input_filtered(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, link_bcast: bool) {
        let ips = &cx.stats.ip;
        let dst = Ipv4Packet::new_unchecked(p.data()).dst();
        if dst.is_multicast() {
            ips.notmember.inc();
            return self.free(p);
        }
        if dst.is_broadcast() {
            return self.local_input(cx, ifp, p, true);
        }
        // A filter may have put the packet in another routing table (pf's
        // `rtable`): everything after is looked up there, as OpenBSD's
        // ip_input with ph_rtableid. A table that does not exist routes
        // nothing.
        let other = (p.meta.rtable != 0).then(|| cx.stack.routes.snapshot(p.meta.rtable));
        let route = match &other {
            None => cx.rt.lookup(dst),
            Some(table) => table.as_ref().and_then(|t| t.lookup(dst)),
        };
        if let Some(r) = route {
            if r.flags.contains(RouteFlags::LOCAL) {
                return self.local_input(cx, ifp, p, false);
            }
            if r.flags.contains(RouteFlags::BROADCAST) {
                // A directed broadcast: ours unless forwarding them is on
                // and it is for another interface's subnet.
                if !(cx.stack.config.directed_broadcast && r.ifp != ifp.weak()) {
                    return self.local_input(cx, ifp, p, true);
                }
            }
        }
        if link_bcast || !cx.stack.config.forwarding {
            // Never forward what arrived as a link-level broadcast.
            ips.cantforward.inc();
            return self.free(p);
        }
        self.ip_forward(cx, ifp, p, route);
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

    // ---- local delivery ----------------------------------------------------

    fn local_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, bcast: bool) {
        let ips = &cx.stats.ip;
        let is_frag = Ipv4Packet::new_unchecked(p.data()).is_fragment();
        let mut p = p;
        if is_frag {
            match self.reassemble(cx, p) {
                Some(whole) => p = whole,
                None => return,
            }
        }
        ips.delivered.inc();
        let proto = Ipv4Packet::new_unchecked(p.data()).protocol();
        match proto {
            IpProtocol::ICMP => self.icmp_input(cx, ifp, p, bcast),
            IpProtocol::UDP => self.udp_input(cx, ifp, p, bcast),
            IpProtocol::TCP => self.tcp_input(cx, ifp, p, bcast),
            _ => {
                ips.noproto.inc();
                if !bcast {
                    self.icmp_error(cx, Some(ifp), &p, bcast, IcmpErr::Unreach(DstUnreachable::ProtoUnreachable, 0));
                }
                self.free(p);
            }
        }
    }

    /// A fragment for the router itself: kept until its datagram is whole
    /// (then returned in one large buffer), or dropped and counted.
    fn reassemble(&mut self, cx: &Ctx, p: PacketBuf) -> Option<PacketBuf> {
        let ips = &cx.stats.ip;
        let result = cx.stack.reass.add(cx.now, p.data());
        let meta = p.meta;
        self.free(p);
        let (header, payload) = match result {
            ReassResult::Held => return None,
            ReassResult::Dropped => {
                ips.fragdropped.inc();
                return None;
            }
            ReassResult::Complete { header, payload } => (header, payload),
        };
        let Some(mut whole) = self.large_pool.alloc() else {
            ips.fragdropped.inc();
            return None;
        };
        let len = header.len() + payload.len();
        if whole.set_len(len).is_err() {
            ips.fragdropped.inc();
            self.free(whole);
            return None;
        }
        whole.data_mut()[..header.len()].copy_from_slice(&header);
        whole.data_mut()[header.len()..].copy_from_slice(&payload);
        whole.meta = meta;
        let mut ip = Ipv4Packet::new_unchecked(whole.data_mut());
        ip.set_total_len(len as u16);
        ip.set_flags_frag(false, false, 0);
        ip.fill_checksum();
        ips.reassembled.inc();
        Some(whole)
    }

    fn icmp_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf, bcast: bool) {
        let ics = &cx.stats.icmp;
        let hlen = Ipv4Packet::new_unchecked(p.data()).header_len() as usize;
        let payload = &p.data()[hlen..];
        if payload.len() < ICMP_HEADER_LEN {
            ics.tooshort.inc();
            return self.free(p);
        }
        if checksum::checksum(payload) != 0 {
            ics.checksum.inc();
            return self.free(p);
        }
        let msg_type = payload[0];
        if let Some(c) = ics.inhist.get(msg_type as usize) {
            c.inc();
        }
        if msg_type != icmpv4::msg_type::ECHO_REQUEST {
            // Replies and errors addressed to the router: nobody listens.
            return self.free(p);
        }
        if bcast && !cx.stack.config.bmcast_echo {
            ics.bmcastecho.inc();
            return self.free(p);
        }
        // Reflect in place (icmp_reflect): strip options, swap addresses,
        // echo request → reply with an incremental checksum update.
        if hlen > IPV4_MIN_HEADER {
            let shift = hlen - IPV4_MIN_HEADER;
            p.data_mut().copy_within(0..IPV4_MIN_HEADER, shift);
            let _ = p.pull_front(shift);
            let len = p.len() as u16;
            let mut ip = Ipv4Packet::new_unchecked(p.data_mut());
            ip.set_header_len(IPV4_MIN_HEADER as u8);
            ip.set_total_len(len);
        }
        let (orig_src, orig_dst) = {
            let ip = Ipv4Packet::new_unchecked(p.data());
            (ip.src(), ip.dst())
        };
        let reply_src = if bcast { ifp.source_for(orig_src).unwrap_or(orig_dst) } else { orig_dst };
        let code = p.data()[IPV4_MIN_HEADER + 1];
        {
            let icmp = &mut p.data_mut()[IPV4_MIN_HEADER..];
            let old_word = u16::from_be_bytes([icmpv4::msg_type::ECHO_REQUEST, code]);
            let new_word = u16::from_be_bytes([icmpv4::msg_type::ECHO_REPLY, code]);
            icmp[0] = icmpv4::msg_type::ECHO_REPLY;
            let old_csum = u16::from_be_bytes([icmp[2], icmp[3]]);
            let c = checksum::update16(old_csum, old_word, new_word);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let id = self.next_ip_id();
        {
            let mut ip = Ipv4Packet::new_unchecked(p.data_mut());
            ip.set_src(reply_src);
            ip.set_dst(orig_src);
            ip.set_ttl(ICMP_REFLECT_TTL);
            ip.set_ident(id);
            ip.set_flags_frag(false, false, 0);
            ip.fill_checksum();
        }
        // icmp_reflect (m_resethdr): a new packet now; only its routing
        // table and pf's generated mark stay (not pf's link to the
        // request's state, nor the request's link-level broadcast).
        p.meta =
            PacketMeta { rtable: p.meta.rtable, flags: p.meta.flags & mflags::PF_GENERATED, ..PacketMeta::default() };
        ics.outhist[icmpv4::msg_type::ECHO_REPLY as usize].inc();
        ics.reflect.inc();
        self.ip_output(cx, p);
    }

    fn udp_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, bcast: bool) {
        let ts = &cx.stats.transport;
        ts.udp_ipackets.inc();
        let ip = Ipv4Packet::new_unchecked(p.data());
        let (src, dst) = (ip.src(), ip.dst());
        let hlen = ip.header_len() as usize;
        let payload = &p.data()[hlen..];
        if payload.len() < UDP_HEADER_LEN {
            ts.udp_hdrops.inc();
            return self.free(p);
        }
        let ulen = u16::from_be_bytes([payload[4], payload[5]]) as usize;
        if ulen < UDP_HEADER_LEN || ulen > payload.len() {
            ts.udp_badlen.inc();
            return self.free(p);
        }
        let udp = softnet_wire::udp::UdpPacket::new_unchecked(&payload[..ulen]);
        if udp.checksum() != 0 && !udp.verify_checksum(src, dst) {
            ts.udp_badsum.inc();
            return self.free(p);
        }
        if bcast {
            ts.udp_noportbcast.inc();
        } else {
            // Nothing listens on the router: port unreachable (traceroute's
            // last hop when it targets the router).
            ts.udp_noport.inc();
            self.icmp_error(cx, Some(ifp), &p, bcast, IcmpErr::Unreach(DstUnreachable::PortUnreachable, 0));
        }
        self.free(p);
    }

    fn tcp_input(&mut self, cx: &Ctx, _ifp: &Arc<Interface>, p: PacketBuf, bcast: bool) {
        let ts = &cx.stats.transport;
        ts.tcp_rcvtotal.inc();
        let ip = Ipv4Packet::new_unchecked(p.data());
        let (src, dst) = (ip.src(), ip.dst());
        let hlen = ip.header_len() as usize;
        let seg = &p.data()[hlen..];
        let Ok(tcp) = TcpPacket::new_checked(seg) else {
            ts.tcp_rcvshort.inc();
            return self.free(p);
        };
        if !tcp.verify_checksum(src, dst) {
            ts.tcp_rcvbadsum.inc();
            return self.free(p);
        }
        let flags = tcp.flags();
        if bcast || flags.contains(TcpFlags::RST) {
            return self.free(p);
        }
        // RFC 793 "Reset Generation", closed port: if the segment has an
        // ACK, <SEQ=SEG.ACK><CTL=RST>; else <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
        // <CTL=RST,ACK>, where SEG.LEN counts SYN and FIN.
        let seg_len =
            tcp.payload().len() as u32 + flags.contains(TcpFlags::SYN) as u32 + flags.contains(TcpFlags::FIN) as u32;
        let (seq, ack, rflags) = if flags.contains(TcpFlags::ACK) {
            (tcp.ack_number(), 0, TcpFlags::RST)
        } else {
            (0, tcp.seq_number().wrapping_add(seg_len), TcpFlags::RST | TcpFlags::ACK)
        };
        let repr = TcpRepr {
            src_port: tcp.dst_port(),
            dst_port: tcp.src_port(),
            seq,
            ack,
            flags: rflags,
            window: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: 0,
        };
        let Some(mut r) = self.pool.alloc() else {
            cx.stats.ip.odropped.inc();
            return self.free(p);
        };
        let ip_repr = Ipv4Repr {
            src: dst,
            dst: src,
            protocol: IpProtocol::TCP,
            ttl: cx.stack.config.default_ttl,
            tos: 0,
            ident: self.next_ip_id(),
            dont_frag: true,
            payload_len: TCP_MIN_HEADER,
        };
        self.free(p);
        if r.rewind(IPV4_MIN_HEADER + TCP_MIN_HEADER).is_err() {
            return self.free(r);
        }
        let buf = r.data_mut();
        ip_repr.emit(&mut buf[..IPV4_MIN_HEADER]);
        repr.emit(&mut buf[IPV4_MIN_HEADER..]);
        let mut t = TcpPacket::new_unchecked(&mut buf[IPV4_MIN_HEADER..]);
        t.fill_checksum(dst, src);
        ts.tcp_sndrst.inc();
        self.ip_output(cx, r);
    }

    // ---- ICMP errors -----------------------------------------------------

    /// Sends an ICMP error about `orig` (an IPv4 packet at `data()`), unless
    /// RFC 1122 §3.2.2 / RFC 1812 §4.3.2.7 forbid it: never about an ICMP
    /// error, a broadcast or multicast, a non-first fragment, or a source
    /// that is not a unicast host. Rate limited. `orig` stays the caller's.
    fn icmp_error(&mut self, cx: &Ctx, rcvif: Option<&Interface>, orig: &PacketBuf, link_bcast: bool, why: IcmpErr) {
        let ics = &cx.stats.icmp;
        ics.error.inc();
        let o = orig.data();
        let oip = Ipv4Packet::new_unchecked(o);
        let hlen = oip.header_len() as usize;
        let (osrc, odst) = (oip.src(), oip.dst());
        if oip.frag_offset() != 0 || link_bcast || odst.is_multicast() || odst.is_broadcast() {
            ics.bmcast.inc();
            return;
        }
        if osrc.is_unspecified() || osrc.is_multicast() || osrc.is_broadcast() || osrc.is_loopback() {
            ics.bmcast.inc();
            return;
        }
        if let Some(r) = cx.rt.lookup(odst) {
            if r.flags.contains(RouteFlags::BROADCAST) {
                ics.bmcast.inc();
                return;
            }
        }
        if oip.protocol() == IpProtocol::ICMP && !matches!(why, IcmpErr::Redirect(_)) {
            match o.get(hlen) {
                Some(&t) if icmpv4::is_error(t) => {
                    ics.oldicmp.inc();
                    return;
                }
                None => {
                    ics.oldshort.inc();
                    return;
                }
                _ => {}
            }
        }
        if !self.icmp_bucket.take(cx.now) {
            ics.toofreq.inc();
            return;
        }
        let Some(mut e) = self.pool.alloc() else {
            cx.stats.ip.odropped.inc();
            return;
        };
        let quote = &o[..o.len().min(ICMP_ERROR_MAX - IPV4_MIN_HEADER - ICMP_HEADER_LEN)];
        let (repr, msg_type) = match why {
            IcmpErr::Unreach(code, mtu) => {
                (Icmpv4Repr::DstUnreachable { code, next_hop_mtu: mtu, data: quote }, icmpv4::msg_type::DST_UNREACHABLE)
            }
            IcmpErr::TimeExceeded => (
                Icmpv4Repr::TimeExceeded { code: TimeExceeded::TtlExpired, data: quote },
                icmpv4::msg_type::TIME_EXCEEDED,
            ),
            IcmpErr::ParamProblem(pointer) => {
                (Icmpv4Repr::ParamProblem { pointer, data: quote }, icmpv4::msg_type::PARAM_PROBLEM)
            }
            IcmpErr::Redirect(gateway) => (
                Icmpv4Repr::Redirect { code: icmpv4::Redirect::Host, gateway, data: quote },
                icmpv4::msg_type::REDIRECT,
            ),
        };
        // icmp_reflect: answer from the address the packet was sent to if
        // it is ours, else from the receiving interface.
        let src = match cx.rt.lookup(odst) {
            Some(r) if r.flags.contains(RouteFlags::LOCAL) => Some(odst),
            _ => rcvif.and_then(|i| i.source_for(osrc)),
        };
        let src = src.or_else(|| cx.rt.lookup(osrc).and_then(|r| r.ifa));
        let Some(src) = src else {
            cx.stats.ip.noroute.inc();
            return self.free(e);
        };
        let icmp_len = repr.buffer_len();
        let ip_repr = Ipv4Repr {
            src,
            dst: osrc,
            protocol: IpProtocol::ICMP,
            ttl: ICMP_REFLECT_TTL,
            tos: 0,
            ident: self.next_ip_id(),
            dont_frag: false,
            payload_len: icmp_len,
        };
        if e.rewind(IPV4_MIN_HEADER + icmp_len).is_err() {
            return self.free(e);
        }
        let buf = e.data_mut();
        ip_repr.emit(&mut buf[..IPV4_MIN_HEADER]);
        repr.emit(&mut buf[IPV4_MIN_HEADER..]);
        // icmp_do_error: an error about a packet pf made is pf's too.
        e.meta.flags |= orig.meta.flags & mflags::PF_GENERATED;
        if let Some(c) = ics.outhist.get(msg_type as usize) {
            c.inc();
        }
        self.ip_output(cx, e);
    }

    /// The IP ID of a packet the router sends: random (as OpenBSD's
    /// ip_randomid), so that it tells nothing about the router's traffic.
    #[inline]
    fn next_ip_id(&mut self) -> u16 {
        crate::rng::random_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(10, 2);
        let t0 = Instant::from_secs(1);
        b.last = t0;
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0));
        // 10 per second: one token per 100 ms.
        assert!(b.take(t0 + std::time::Duration::from_millis(100)));
        assert!(!b.take(t0 + std::time::Duration::from_millis(150)));
    }
}
