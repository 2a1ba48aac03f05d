//! AF_PACKET link over a veth pair between two namespaces the tests create
//! (root). `bench_veth_pps` is `#[ignore]`d: run it with
//! `cargo test --release -p softnet-io --test afpacket -- --ignored --nocapture`.

mod common;

use common::*;
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool, DEFAULT_BUF_SIZE};
use softnet_io::{PacketOptions, PacketQueue, RxRing, TxMode};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0x77, 0, 1];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0x77, 0, 2];
const MARK: &[u8; 4] = b"snio";

/// Two namespaces joined by veth `snio-a` -- `snio-b`, with fixed MACs.
struct Pair {
    na: Netns,
    nb: Netns,
}

fn pair(tag: &str) -> Pair {
    let na = Netns::new(&format!("{tag}a"));
    let nb = Netns::new(&format!("{tag}b"));
    veth_pair(&na, "snio-a", &nb, "snio-b");
    na.ip(&["link", "set", "snio-a", "address", "02:00:00:77:00:01"]);
    nb.ip(&["link", "set", "snio-b", "address", "02:00:00:77:00:02"]);
    Pair { na, nb }
}

/// A UDP frame A -> B of flow `flow` carrying MARK + `seq`.
fn test_frame(flow: u16, seq: u32) -> Vec<u8> {
    marked_frame(MAC_B, MAC_A, 77, MARK, flow, seq)
}

fn test_seq(f: &[u8]) -> Option<u32> {
    marked_seq(f, MARK)
}

#[test]
#[ignore = "needs root"]
fn frames_cross_veth_and_no_echo_of_own_frames() {
    require_root();
    let p = pair("pk");
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &PacketOptions::default()).unwrap());
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &PacketOptions::default()).unwrap());
    let mut pool = PacketPool::new(512, DEFAULT_BUF_SIZE);
    let frames: Vec<Vec<u8>> = (0..200).map(|i| test_frame(1, i)).collect();
    assert_eq!(send_all(&mut a[0], &mut pool, &frames), 200);

    let mut got = Vec::new();
    recv_until(&mut b[0], &mut pool, Duration::from_secs(3), |p| {
        if let Some(s) = test_seq(p.data()) {
            assert_eq!(p.data(), &frames[s as usize][..], "frame arrives unchanged");
            got.push(s);
        }
        got.len() == 200
    });
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "all frames, in order");

    // The sender's own RX queue never sees them (PACKET_IGNORE_OUTGOING).
    let mut echoed = 0;
    recv_until(&mut a[0], &mut pool, Duration::from_millis(200), |p| {
        echoed += test_seq(p.data()).is_some() as usize;
        false
    });
    assert_eq!(echoed, 0);

    // A frame longer than the device takes is counted, not sent.
    let mut big = test_frame(1, 999);
    big.resize(1600, 0);
    let mut batch = vec![PacketBuf::from_slice(&big)];
    assert_eq!(a[0].send(&mut pool, &mut batch), 0);
    let sa = a[0].stats().snapshot();
    assert_eq!((sa.tx_frames, sa.tx_oversize, sa.tx_errors), (200, 1, 0));
    let sb = b[0].stats().snapshot();
    assert!(sb.rx_frames >= 200);
    assert_eq!(sb.rx_oversize + sb.rx_truncated + sb.rx_kernel_drops, 0);
    assert_eq!(pool.available(), 512, "every buffer back in the pool");
}

/// Time from a lone frame's send until `recv` returns it at B, and whether
/// it arrived unchanged, for a receiver with `rx`.
fn lone_frame(tag: &str, rx: PacketOptions, frame: &[u8]) -> (Duration, bool) {
    let p = pair(tag);
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &PacketOptions::default()).unwrap());
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &rx).unwrap());
    let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
    let t0 = Instant::now();
    assert_eq!(send_all(&mut a[0], &mut pool, &[frame.to_vec()]), 1);
    let mut same = false;
    let got = recv_until(&mut b[0], &mut pool, Duration::from_secs(3), |p| {
        // Ours (tagged or not) by its mark; the kernel's own frames are not.
        let ours = p.data().windows(MARK.len()).any(|w| w == MARK);
        same = ours && p.data() == frame;
        ours
    });
    assert!(got, "the frame arrived");
    (t0.elapsed(), same)
}

/// A `Frames` ring of 1 MiB at MTU 1500 has 656 slots (1,584 B each, 41
/// a 64 KiB block) and holds that many frames however small they are, read
/// or not; the kernel drops the rest, counted in `rx_kernel_drops` once the
/// ring has been read dry (no later frame need say so with
/// `TP_STATUS_LOSING`).
#[test]
#[ignore = "needs root"]
fn a_frames_ring_holds_its_slots_and_counts_the_rest() {
    require_root();
    let p = pair("rd");
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &PacketOptions::default()).unwrap());
    let rx = PacketOptions { rx_ring: RxRing::Frames, rx_ring_bytes: 1 << 20, ..Default::default() };
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &rx).unwrap());
    let mut pool = PacketPool::new(1024, DEFAULT_BUF_SIZE);
    let frames: Vec<Vec<u8>> = (0..1000).map(|i| test_frame(1, i)).collect();
    let mut sent = 0;
    while sent < 1000 {
        sent += send_all(&mut a[0], &mut pool, &frames[sent..(sent + 256).min(1000)]);
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut held = 0;
    recv_until(&mut b[0], &mut pool, Duration::from_millis(500), |_| {
        held += 1;
        false
    });
    assert_eq!(held, 656, "one frame a slot");
    // Every drop is counted once the ring has run dry, though no frame
    // after the drops said so (the frames held were written before them).
    assert!(b[0].stats().snapshot().rx_kernel_drops >= 1000 - 656, "{:?}", b[0].stats().snapshot());
    assert_eq!(send_all(&mut a[0], &mut pool, &[test_frame(1, 1000)]), 1);
    let got = recv_until(&mut b[0], &mut pool, Duration::from_secs(3), |p| test_seq(p.data()) == Some(1000));
    assert!(got, "the ring takes frames again once read");
    assert!(b[0].stats().snapshot().rx_kernel_drops >= 1000 - 656, "{:?}", b[0].stats().snapshot());
    assert_eq!(pool.available(), 1024);
}

/// A `Blocks` (TPACKET_V3) ring read only after a burst larger than it
/// holds: every frame of the burst is either read or counted in
/// `rx_kernel_drops` once the ring has run dry, though the drops came
/// after the last block the kernel closed (none said `TP_STATUS_LOSING`).
#[test]
#[ignore = "needs root"]
fn a_blocks_ring_counts_the_drops_after_its_last_block() {
    require_root();
    let p = pair("bd");
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &PacketOptions::default()).unwrap());
    // Four 64 KiB blocks: a few hundred small frames each.
    let rx = PacketOptions { rx_ring_bytes: 256 << 10, rx_block_size: 64 << 10, ..Default::default() };
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &rx).unwrap());
    let mut pool = PacketPool::new(1024, DEFAULT_BUF_SIZE);
    const N: u32 = 6000;
    let frames: Vec<Vec<u8>> = (0..N).map(|i| test_frame(1, i)).collect();
    let mut sent = 0;
    while sent < frames.len() {
        sent += send_all(&mut a[0], &mut pool, &frames[sent..(sent + 256).min(frames.len())]);
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut held = 0u64;
    recv_until(&mut b[0], &mut pool, Duration::from_millis(500), |p| {
        held += test_seq(p.data()).is_some() as u64;
        false
    });
    let drops = b[0].stats().snapshot().rx_kernel_drops;
    assert!(held < N as u64 / 2, "the ring held {held} of {N}: make the burst larger");
    // The namespace may add a frame of its own (counted, not ours).
    assert!((N as u64..N as u64 + 8).contains(&(held + drops)), "held {held} + dropped {drops}, sent {N}");
    assert_eq!(pool.available(), 1024);
}

/// The V2 ring (`RxRing::Frames`) hands a frame over as soon
/// as the kernel wrote it; the V3 ring waits for its block's retire timer
/// (here 400 ms) when nothing else fills the block. A VLAN tag the kernel
/// stripped into the skb (veth untags on receive) is put back by both.
#[test]
#[ignore = "needs root"]
fn the_frames_ring_hands_a_lone_frame_over_at_once() {
    require_root();
    let blocks = PacketOptions { rx_ring: RxRing::Blocks, retire_timeout_ms: 400, ..Default::default() };
    let frames = PacketOptions { rx_ring: RxRing::Frames, ..Default::default() };
    let (t, same) = lone_frame("lf2", frames.clone(), &test_frame(1, 5));
    assert!(same, "frame arrives unchanged");
    assert!(t < Duration::from_millis(200), "Frames: {t:?}");
    let (t, same) = lone_frame("lf3", blocks.clone(), &test_frame(1, 6));
    assert!(same, "frame arrives unchanged");
    assert!(t >= Duration::from_millis(300), "Blocks waits for the retire timer: {t:?}");
    let plain = test_frame(1, 7);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x07]); // priority 1, VLAN 7
    tagged.extend_from_slice(&plain[12..]);
    for (tag, o) in [("lv2", frames), ("lv3", blocks)] {
        let (_, same) = lone_frame(tag, o.clone(), &tagged);
        assert!(same, "{:?}: the VLAN tag is put back where it was", o.rx_ring);
    }
}

#[test]
#[ignore = "needs root"]
fn sendmmsg_mode_delivers_and_counts_oversize() {
    require_root();
    let p = pair("mm");
    let o = PacketOptions { tx_mode: TxMode::Sendmmsg, ..Default::default() };
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &o).unwrap());
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &PacketOptions::default()).unwrap());
    let mut pool = PacketPool::new(256, DEFAULT_BUF_SIZE);
    let mut frames: Vec<Vec<u8>> = (0..150).map(|i| test_frame(1, i)).collect();
    frames[70].resize(1600, 0); // too long for MTU 1500: counted, the rest go
    assert_eq!(send_all(&mut a[0], &mut pool, &frames), 149);
    let mut got = 0;
    recv_until(&mut b[0], &mut pool, Duration::from_secs(3), |p| {
        got += test_seq(p.data()).is_some() as usize;
        got == 149
    });
    assert_eq!(got, 149);
    let s = a[0].stats().snapshot();
    assert_eq!((s.tx_frames, s.tx_oversize, s.tx_errors), (149, 1, 0));
    assert_eq!(pool.available(), 256);
}

#[test]
#[ignore = "needs root"]
fn kernel_frames_leaving_the_device_are_not_seen() {
    require_root();
    let p = pair("io");
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &PacketOptions::default()).unwrap());
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &PacketOptions::default()).unwrap());
    p.na.ip(&["addr", "add", "10.77.0.1/24", "dev", "snio-a"]);
    // The kernel of A sends a datagram to 10.77.0.2: an ARP request goes out.
    p.na.run(|| {
        let s = std::net::UdpSocket::bind("10.77.0.1:0").unwrap();
        let _ = s.send_to(b"x", "10.77.0.2:9");
    });
    let is_arp_from_a = |f: &[u8]| f.len() >= 42 && ethertype(f) == 0x0806 && f[28..32] == [10, 77, 0, 1];
    let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
    assert!(
        recv_until(&mut b[0], &mut pool, Duration::from_secs(3), |p| { is_arp_from_a(p.data()) }),
        "B sees A's ARP"
    );
    let mut seen_on_a = false;
    recv_until(&mut a[0], &mut pool, Duration::from_millis(200), |p| {
        seen_on_a |= is_arp_from_a(p.data());
        false
    });
    assert!(!seen_on_a, "A's own outgoing ARP is not delivered to A's queue");
}

#[test]
#[ignore = "needs root"]
fn fanout_delivers_each_frame_to_exactly_one_queue() {
    require_root();
    let p = pair("fo");
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &PacketOptions::default()).unwrap());
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 2, &PacketOptions::default()).unwrap());
    assert_eq!(b.len(), 2);
    let mut pool = PacketPool::new(1024, DEFAULT_BUF_SIZE);
    let n = 400u32;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| test_frame(i as u16, i)).collect();
    assert_eq!(send_all(&mut a[0], &mut pool, &frames), n as usize);

    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut per_queue = [0usize; 2];
    let mut total = 0;
    let end = Instant::now() + Duration::from_secs(3);
    let mut batch = Vec::with_capacity(64);
    while total < n as usize && Instant::now() < end {
        let mut got = 0;
        for (qi, q) in b.iter_mut().enumerate() {
            got += q.recv(&mut pool, &mut batch, 64);
            for p in batch.drain(..) {
                if let Some(s) = test_seq(p.data()) {
                    *seen.entry(s).or_default() += 1;
                    per_queue[qi] += 1;
                    total += 1;
                }
                pool.free(p);
            }
        }
        if got == 0 {
            poll_in(&b[0], 5);
        }
    }
    // Late duplicates would show up after the count is reached.
    std::thread::sleep(Duration::from_millis(50));
    for (qi, q) in b.iter_mut().enumerate() {
        q.recv(&mut pool, &mut batch, 64);
        for p in batch.drain(..) {
            if let Some(s) = test_seq(p.data()) {
                *seen.entry(s).or_default() += 1;
                per_queue[qi] += 1;
            }
            pool.free(p);
        }
    }
    assert_eq!(seen.len(), n as usize, "every frame arrived");
    assert!(seen.values().all(|&c| c == 1), "no frame arrived twice");
    assert!(per_queue[0] > 0 && per_queue[1] > 0, "flows spread over both queues: {per_queue:?}");
}

#[test]
#[ignore = "needs root"]
fn oversized_frames_are_counted_not_lost_silently() {
    require_root();
    let p = pair("ov");
    p.na.ip(&["link", "set", "snio-a", "mtu", "9000"]);
    p.nb.ip(&["link", "set", "snio-b", "mtu", "9000"]);
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &PacketOptions::default()).unwrap());
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &PacketOptions::default()).unwrap());
    // The sender's pool has big buffers; the receiver's the usual 2 KiB.
    let mut big_pool = PacketPool::new(8, 16384);
    let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
    let mut big = test_frame(1, 1);
    big.resize(4000, 0xee);
    let small = test_frame(1, 2);
    let mut batch = vec![PacketBuf::from_slice(&big), PacketBuf::from_slice(&small)];
    assert_eq!(a[0].send(&mut big_pool, &mut batch), 2);
    let got_small = recv_until(&mut b[0], &mut pool, Duration::from_secs(3), |p| {
        assert_ne!(test_seq(p.data()), Some(1), "the 4000-byte frame cannot fit a 2 KiB buffer");
        test_seq(p.data()) == Some(2)
    });
    assert!(got_small);
    assert_eq!(b[0].stats().snapshot().rx_oversize, 1);
}

#[test]
#[ignore = "needs root"]
fn partial_checksums_from_the_peer_are_completed() {
    require_root();
    let p = pair("cs");
    // Only B is ours; A's kernel keeps TX checksum offload on and sends UDP.
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &PacketOptions::default()).unwrap());
    let tx_csum = p.na.run(|| softnet_io::ethtool::offload_enabled("snio-a", "tx-checksum").unwrap());
    p.na.ip(&["addr", "add", "10.78.0.1/24", "dev", "snio-a"]);
    p.na.ip(&["neigh", "add", "10.78.0.2", "lladdr", "02:00:00:77:00:02", "dev", "snio-a", "nud", "permanent"]);
    p.na.run(|| {
        let s = std::net::UdpSocket::bind("10.78.0.1:4000").unwrap();
        s.send_to(b"checksum me please", "10.78.0.2:9").unwrap();
    });
    let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
    let mut udp_ok = None;
    recv_until(&mut b[0], &mut pool, Duration::from_secs(3), |p| {
        let f = p.data();
        if f.len() >= 42 && ethertype(f) == 0x0800 && f[23] == 17 && f[34..36] == 4000u16.to_be_bytes() {
            let ulen = u16::from_be_bytes([f[38], f[39]]) as usize;
            let mut ph = Vec::new();
            ph.extend_from_slice(&f[26..34]);
            ph.extend_from_slice(&[0, 17]);
            ph.extend_from_slice(&(ulen as u16).to_be_bytes());
            ph.extend_from_slice(&f[34..34 + ulen]);
            udp_ok = Some(csum(&ph) == 0);
        }
        udp_ok.is_some()
    });
    assert_eq!(udp_ok, Some(true), "UDP checksum is valid on delivery");
    let s = b[0].stats().snapshot();
    eprintln!("peer tx-checksum offload {tx_csum}, completed here: {}", s.rx_csum_completed);
    if tx_csum {
        assert_eq!(s.rx_csum_completed, 1, "veth with TX checksum offload hands over CHECKSUM_PARTIAL");
    }
}

#[test]
#[ignore = "needs root"]
fn open_errors_name_the_device() {
    require_root();
    let ns = Netns::new("pe");
    let e = ns.run(|| PacketQueue::open_all("snio-none", 1, &PacketOptions::default()).err().unwrap().to_string());
    assert!(e.starts_with("snio-none: SIOCGIFINDEX: No such device"), "{e}");
    let e = ns.run(|| PacketQueue::open_all("lo", 1, &PacketOptions::default()).err().unwrap().to_string());
    assert!(e.starts_with("lo: not an Ethernet device"), "{e}");
}

/// CPU seconds used by the calling thread.
fn thread_cpu() -> f64 {
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Frames per second through a veth pair: one sender queue (batches of 64
/// through the TX ring), one receiver queue (batch recv from the RX ring).
#[test]
#[ignore = "benchmark; needs root"]
fn bench_veth_pps() {
    require_root();
    let secs: u64 = std::env::var("SNIO_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let size: usize = std::env::var("SNIO_BENCH_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let mmsg = std::env::var("SNIO_BENCH_TX").as_deref() == Ok("mmsg");
    let tx_opts = PacketOptions { tx_mode: if mmsg { TxMode::Sendmmsg } else { TxMode::Ring }, ..Default::default() };
    let p = pair("bn");
    let mut a = p.na.run(|| PacketQueue::open_all("snio-a", 1, &tx_opts).unwrap());
    let mut b = p.nb.run(|| PacketQueue::open_all("snio-b", 1, &PacketOptions::default()).unwrap());
    let mut tx = a.pop().unwrap();
    let mut rx = b.pop().unwrap();
    let (tx_stats, rx_stats) = (tx.stats(), rx.stats());
    let mut template = test_frame(1, 0);
    template.resize(size.max(template.len()), 0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let dur = Duration::from_secs(secs);
    let (sent, received, rx_time) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            pin(1);
            let mut pool = PacketPool::new(256, DEFAULT_BUF_SIZE);
            let mut batch = Vec::with_capacity(64);
            let mut n = 0u64;
            let c0 = thread_cpu();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = rx.recv(&mut pool, &mut batch, 64);
                n += got as u64;
                for p in batch.drain(..) {
                    pool.free(p);
                }
                if got == 0 {
                    poll_in(&rx, 5);
                }
            }
            (n, thread_cpu() - c0)
        });
        pin(0);
        let mut pool = PacketPool::new(256, DEFAULT_BUF_SIZE);
        let mut batch = Vec::with_capacity(64);
        let mut sent = 0u64;
        let t0 = Instant::now();
        let c0 = thread_cpu();
        while t0.elapsed() < dur {
            for _ in 0..64 {
                let mut p = pool.alloc().unwrap();
                p.set_len(template.len()).unwrap();
                p.data_mut().copy_from_slice(&template);
                batch.push(p);
            }
            sent += tx.send(&mut pool, &mut batch) as u64;
        }
        let tx_cpu = thread_cpu() - c0;
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (n, rx_cpu) = receiver.join().unwrap();
        (sent, n, (tx_cpu, rx_cpu))
    });
    let tx_s = tx_stats.snapshot();
    let rx_s = rx_stats.snapshot();
    let secs_f = dur.as_secs_f64();
    println!(
        "veth AF_PACKET tx={} {size}-byte frames, {secs}s: sent {:.0} f/s (tx_busy {}), received {:.0} f/s ({:.1}% of sent), kernel rx drops {}; sender thread CPU {:.0} ns/frame (includes the veth's delivery), receiver thread CPU {:.0} ns/frame",
        if mmsg { "sendmmsg" } else { "ring" },
        sent as f64 / secs_f,
        tx_s.tx_busy,
        received as f64 / secs_f,
        100.0 * received as f64 / sent.max(1) as f64,
        rx_s.rx_kernel_drops,
        rx_time.0 * 1e9 / sent.max(1) as f64,
        rx_time.1 * 1e9 / received.max(1) as f64,
    );
    assert!(received > 0);
}
