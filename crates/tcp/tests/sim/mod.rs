//! A deterministic in-memory world for the engine: a shared clock, seeded
//! random numbers, and a simulated link with loss, duplication, reordering
//! and delay driven by its own seeded generator.
#![allow(dead_code)]

use softnet_tcp::{segment_buffer_len, Config, Env, Instant, IsnGen, Seq, Tcb};
use softnet_wire::tcp::{TcpPacket, TcpRepr};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub const A_PORT: u16 = 40000;
pub const B_PORT: u16 = 80;

/// splitmix64: small, seedable, good enough for tests.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// One endpoint's view of the world.
pub struct TestEnv {
    pub now: Instant,
    pub rng: Rng,
    pub isn: IsnGen,
    pub local: IpAddr,
    pub remote: IpAddr,
}

impl TestEnv {
    pub fn new(seed: u64, local: [u8; 4], remote: [u8; 4]) -> TestEnv {
        let mut rng = Rng(seed);
        let isn = IsnGen::new(|| rng.next_u64() as u32);
        TestEnv {
            now: Instant::from_millis(1000),
            rng,
            isn,
            local: Ipv4Addr::from(local).into(),
            remote: Ipv4Addr::from(remote).into(),
        }
    }
}

impl Env for TestEnv {
    fn now(&self) -> Instant {
        self.now
    }
    fn random_u32(&mut self) -> u32 {
        self.rng.next_u64() as u32
    }
    fn isn(&mut self, local_port: u16, remote_port: u16) -> Seq {
        self.isn.isn(SocketAddr::new(self.local, local_port), SocketAddr::new(self.remote, remote_port), self.now)
    }
}

/// A segment on the wire: its header as parsed back from the bytes the
/// engine wrote, and its payload.
#[derive(Clone, Debug)]
pub struct Seg {
    pub repr: TcpRepr,
    pub payload: Vec<u8>,
}

/// Everything `tcb` wants to send now, each parsed back through the wire
/// crate (so what is emitted is what a peer would read).
pub fn drain(tcb: &mut Tcb, env: &mut TestEnv) -> Vec<Seg> {
    drain_tso(tcb, env, 0)
}

/// `drain` through `Tcb::output_tso` with `tso_max` (0: `output`).
pub fn drain_tso(tcb: &mut Tcb, env: &mut TestEnv, tso_max: usize) -> Vec<Seg> {
    let mut buf = vec![0u8; segment_buffer_len(9000).max(softnet_wire::tcp::MAX_HEADER_LEN + tso_max)];
    let mut out = Vec::new();
    while let Some(r) = tcb.output_tso(env, &mut buf, tso_max) {
        let bytes = &buf[..r.buffer_len()];
        let p = TcpPacket::new_checked(bytes).expect("engine emits a valid header");
        let repr = TcpRepr::parse(&p).expect("engine emits valid options");
        assert_eq!(repr.flags, r.flags);
        out.push(Seg { repr, payload: p.payload().to_vec() });
        assert!(out.len() < 100_000, "output never stops");
    }
    out
}

/// What a device with segmentation offload does to a TSO segment
/// (tcp_gso_segment): its payload cut into `mss` pieces with the same
/// header, each piece's sequence number advanced, PSH and FIN only on the
/// last.
pub fn gso_cut(seg: &Seg, mss: usize) -> Vec<Seg> {
    use softnet_wire::tcp::TcpFlags;
    let n = seg.payload.len().div_ceil(mss);
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in seg.payload.chunks(mss).enumerate() {
        let mut repr = seg.repr;
        repr.seq = seg.repr.seq.wrapping_add((i * mss) as u32);
        repr.payload_len = chunk.len();
        if i + 1 < n {
            repr.flags.remove(TcpFlags::PSH);
            repr.flags.remove(TcpFlags::FIN);
        }
        out.push(Seg { repr, payload: chunk.to_vec() });
    }
    out
}

pub fn deliver(tcb: &mut Tcb, env: &mut TestEnv, s: &Seg) -> softnet_tcp::Verdict {
    tcb.input(env, &s.repr, &s.payload)
}

/// What the simulated link does to segments.
#[derive(Clone, Debug)]
pub struct LinkProfile {
    pub loss: f64,
    pub dup: f64,
    pub reorder: f64,
    pub delay: Duration,
    /// Extra delay for reordered segments.
    pub jitter: Duration,
    /// Bytes per second each way (0: no serialization delay).
    pub rate: u64,
}

impl LinkProfile {
    pub fn clean(delay_ms: u64) -> LinkProfile {
        LinkProfile {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::ZERO,
            rate: 12_500_000,
        }
    }
}

struct InFlight {
    at: Instant,
    order: u64,
    to_b: bool,
    seg: Seg,
}

/// Two engines joined by a lossy link, with a sender app on A and a
/// reader app on B.
pub struct World {
    pub a: Tcb,
    pub b: Tcb,
    pub ea: TestEnv,
    pub eb: TestEnv,
    pub now: Instant,
    link: Vec<InFlight>,
    link_rng: Rng,
    order: u64,
    pub profile: LinkProfile,
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
    next_send: usize,
    a_closed: bool,
    b_closed: bool,
    /// B reads at most this many bytes per step (None: all).
    pub b_read_limit: Option<usize>,
    pub segments: u64,
    pub trace: bool,
    /// A→B data segments to drop, counted from 1 (retransmissions count).
    pub drop_a: Vec<u64>,
    a_data_segs: u64,
    free_at_a: Instant,
    free_at_b: Instant,
    /// A's device segments (TSO): A sends through `output_tso` with this
    /// limit and the link cuts what it emits with `gso_cut` (0: no TSO).
    pub tso_a: usize,
    /// A's segments longer than its MSS (cut by the link), and the largest.
    pub tso_trains: u64,
    pub tso_largest: usize,
}

impl World {
    pub fn new(seed: u64, cfg_a: Config, cfg_b: Config, profile: LinkProfile, data: Vec<u8>) -> World {
        let mut ea = TestEnv::new(seed ^ 0xa, [10, 0, 0, 1], [10, 0, 0, 2]);
        let mut eb = TestEnv::new(seed ^ 0xb, [10, 0, 0, 2], [10, 0, 0, 1]);
        let a = Tcb::connect(cfg_a, &mut ea, A_PORT, B_PORT);
        let b = Tcb::listen(cfg_b, &mut eb, B_PORT);
        World {
            a,
            b,
            now: ea.now,
            ea,
            eb,
            link: Vec::new(),
            link_rng: Rng(seed),
            order: 0,
            profile,
            sent: data,
            received: Vec::new(),
            next_send: 0,
            a_closed: false,
            b_closed: false,
            b_read_limit: None,
            segments: 0,
            trace: false,
            drop_a: Vec::new(),
            a_data_segs: 0,
            free_at_a: Instant::ZERO,
            free_at_b: Instant::ZERO,
            tso_a: 0,
            tso_trains: 0,
            tso_largest: 0,
        }
    }

    fn push(&mut self, to_b: bool, seg: Seg) {
        self.segments += 1;
        if self.trace {
            let r = &seg.repr;
            eprintln!(
                "{:?} {} {} seq {} ack {} win {} len {} first {:?} sack {:?} ts {:?}",
                self.now,
                if to_b { "A>B" } else { "B>A" },
                r.flags,
                r.seq,
                r.ack,
                r.window,
                seg.payload.len(),
                seg.payload.first(),
                r.sack_ranges,
                r.timestamp
            );
        }
        let p = self.profile.clone();
        if to_b && !seg.payload.is_empty() {
            self.a_data_segs += 1;
            if self.drop_a.contains(&self.a_data_segs) {
                return;
            }
        }
        if self.link_rng.chance(p.loss) {
            return;
        }
        // Serialization at the link's rate, queued behind what is on it.
        let free_at = if to_b { &mut self.free_at_b } else { &mut self.free_at_a };
        let start = (*free_at).max(self.now);
        let tx = ((seg.payload.len() as u64 + 60) * 1_000_000_000).checked_div(p.rate).unwrap_or(0);
        *free_at = start + Duration::from_nanos(tx);
        let depart = *free_at;
        let copies = if self.link_rng.chance(p.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut at = depart + p.delay;
            if self.link_rng.chance(p.reorder) {
                at = at + Duration::from_nanos(self.link_rng.below(p.jitter.as_nanos() as u64 + 1));
            }
            self.order += 1;
            self.link.push(InFlight { at, order: self.order, to_b, seg: seg.clone() });
        }
    }

    /// The apps: A writes what fits and closes when all is queued; B reads
    /// and closes at end of stream.
    fn apps(&mut self) {
        if self.next_send < self.sent.len() {
            if let Ok(n) = self.a.send(&self.sent[self.next_send..]) {
                self.next_send += n;
            }
        }
        if self.next_send == self.sent.len() && !self.a_closed && self.a.state() == softnet_tcp::State::Established {
            self.a.close(&mut self.ea);
            self.a_closed = true;
        }
        let mut buf = [0u8; 16384];
        let limit = self.b_read_limit.unwrap_or(usize::MAX);
        let mut read = 0;
        while read < limit {
            let want = buf.len().min(limit - read);
            match self.b.recv(&mut buf[..want]) {
                Ok(0) => {
                    if !self.b_closed {
                        self.b.close(&mut self.eb);
                        self.b_closed = true;
                    }
                    break;
                }
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    read += n;
                }
                Err(_) => break,
            }
        }
    }

    fn set_now(&mut self, t: Instant) {
        self.now = t;
        self.ea.now = t;
        self.eb.now = t;
    }

    /// One step: apps, outputs, then time moves to the next event and it
    /// happens. Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.apps();
        self.drain_a();
        for s in drain(&mut self.b, &mut self.eb) {
            self.push(false, s);
        }
        let next_link = self.link.iter().map(|f| f.at).min();
        let next = [next_link, self.a.poll_at(), self.b.poll_at()].into_iter().flatten().min();
        let Some(next) = next else { return false };
        if next > self.now {
            self.set_now(next);
        }
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.link.len() {
            if self.link[i].at <= now {
                due.push(self.link.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|f| (f.at, f.order));
        // Each segment is answered before the next is taken, as tcp_input
        // calls tcp_output: a burst gets one ACK per two segments.
        for f in due {
            if f.to_b {
                deliver(&mut self.b, &mut self.eb, &f.seg);
                for s in drain(&mut self.b, &mut self.eb) {
                    self.push(false, s);
                }
            } else {
                deliver(&mut self.a, &mut self.ea, &f.seg);
                self.drain_a();
            }
        }
        if self.a.poll_at().is_some_and(|t| t <= now) {
            self.a.on_timer(&mut self.ea);
        }
        if self.b.poll_at().is_some_and(|t| t <= now) {
            self.b.on_timer(&mut self.eb);
        }
        true
    }

    /// A's output onto the link, through its TSO device if it has one.
    fn drain_a(&mut self) {
        let mss = self.a.mss();
        for s in drain_tso(&mut self.a, &mut self.ea, self.tso_a) {
            if s.payload.len() <= mss {
                self.push(true, s);
                continue;
            }
            assert!(self.tso_a > 0 && s.payload.len() <= self.tso_a, "a train only when asked: {}", s.payload.len());
            self.tso_trains += 1;
            self.tso_largest = self.tso_largest.max(s.payload.len());
            let pieces = gso_cut(&s, mss);
            let last = pieces.len() - 1;
            for (i, p) in pieces.into_iter().enumerate() {
                assert!(i == last || p.payload.len() == mss, "a train is full segments but its tail");
                self.push(true, p);
            }
        }
    }

    /// Runs until both ends are closed (or `limit` of virtual time passes).
    pub fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        while self.now < end {
            if self.a.is_closed() && self.b.is_closed() && self.link.is_empty() {
                break;
            }
            if !self.step() {
                break;
            }
        }
    }
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..len).map(|_| r.next_u64() as u8).collect()
}
