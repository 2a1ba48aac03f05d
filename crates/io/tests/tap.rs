//! TAP link against the kernel, inside namespaces the tests create (root).

mod common;

use common::*;
use softnet_core::link::{LinkQueue, LinkState};
use softnet_core::packet::{PacketBuf, PacketPool, DEFAULT_BUF_SIZE};
use softnet_io::{ifinfo, TapOptions, TapQueue};
use std::time::Duration;

const MY_MAC: [u8; 6] = [0x02, 0, 0, 0x66, 0, 2];
const MY_IP: [u8; 4] = [10, 66, 0, 2];
const KERNEL_IP: [u8; 4] = [10, 66, 0, 1];

#[test]
#[ignore = "needs root"]
fn kernel_answers_arp_and_ping_through_tap() {
    // Reads through the ring (multishot read), writes of one frame by write(2).
    kernel_answers_arp_and_ping(true, false);
}

#[test]
#[ignore = "needs root"]
fn kernel_answers_arp_and_ping_through_an_offload_tap() {
    // IFF_VNET_HDR: every frame read and written with its header.
    kernel_answers_arp_and_ping(true, true);
    kernel_answers_arp_and_ping(false, true);
}

#[test]
#[ignore = "needs root"]
fn kernel_answers_arp_and_ping_through_tap_without_io_uring() {
    // The path of a kernel without io_uring: readv(2) and write(2).
    kernel_answers_arp_and_ping(false, false);
}

fn kernel_answers_arp_and_ping(uring: bool, offload: bool) {
    require_root();
    let ns = Netns::new(match (uring, offload) {
        (true, false) => "tap",
        (false, false) => "tapnu",
        (true, true) => "tapvh",
        (false, true) => "tapvhnu",
    });
    let opts = TapOptions { uring, offload, ..TapOptions::default() };
    let mut qs = ns.run(|| TapQueue::open_all("snio-tap", 1, &opts).unwrap());
    assert_eq!(qs.len(), 1);
    ns.ip(&["addr", "add", "10.66.0.1/24", "dev", "snio-tap"]);
    let (kmac, state) = ns.run(|| (ifinfo::mac_address("snio-tap").unwrap(), ifinfo::link_state("snio-tap").unwrap()));
    assert_eq!(state, LinkState::Up, "a TAP with a queue attached and IFF_UP has carrier");
    assert_eq!(ns.run(|| ifinfo::mtu("snio-tap").unwrap()), 1500);
    let q = &mut qs[0];
    let mut pool = PacketPool::new(256, DEFAULT_BUF_SIZE);

    // ARP: who has 10.66.0.1? The kernel answers with the TAP's MAC.
    let mut tx = vec![PacketBuf::from_slice(&arp_request(MY_MAC, MY_IP, KERNEL_IP))];
    assert_eq!(q.send(&mut pool, &mut tx), 1);
    assert!(tx.is_empty());
    let mut reply = None;
    recv_until(q, &mut pool, Duration::from_secs(3), |p| {
        let f = p.data();
        if f.len() >= 42 && ethertype(f) == 0x0806 && f[20..22] == [0, 2] && f[28..32] == KERNEL_IP {
            reply = Some(f[22..28].to_vec());
        }
        reply.is_some()
    });
    assert_eq!(reply.as_deref(), Some(&kmac[..]), "ARP reply carries the TAP's MAC");

    // ICMP echo to the kernel: it answers (it learned our MAC from the request).
    let ping = ether(kmac, MY_MAC, 0x0800, &ipv4(MY_IP, KERNEL_IP, 1, &icmp_echo(0x5151, 7, b"softnet-io tap")));
    let mut tx = vec![PacketBuf::from_slice(&ping)];
    assert_eq!(q.send(&mut pool, &mut tx), 1);
    let echoed = recv_until(q, &mut pool, Duration::from_secs(3), |p| {
        let f = p.data();
        let hit = f.len() >= 42 && ethertype(f) == 0x0800 && f[23] == 1 && f[34] == 0 && f[38..40] == [0x51, 0x51];
        if hit {
            assert_eq!(&f[0..6], &MY_MAC);
            assert_eq!(csum(&f[14..34]), 0, "IP header checksum filled in");
        }
        hit
    });
    assert!(echoed, "kernel answered the echo request");
    let s = q.stats().snapshot();
    assert_eq!(s.tx_frames, 2);
    assert!(s.rx_frames >= 2);
    assert_eq!(s.rx_oversize + s.tx_errors + s.rx_errors + s.rx_nobuf + s.rx_nobuf_drops, 0);
    assert_eq!(q.reads_through_ring(), uring, "this kernel has multishot reads");
    assert_eq!(q.writes_batched(), uring);
}

#[test]
#[ignore = "needs root"]
fn multi_queue_fallback_and_creation() {
    require_root();
    let ns = Netns::new("tapmq");
    ns.ip(&["tuntap", "add", "dev", "snio-sq", "mode", "tap"]);
    ns.ip(&["tuntap", "add", "dev", "snio-mq", "mode", "tap", "multi_queue"]);
    ns.run(|| {
        let o = TapOptions::default();
        // Existing single-queue TAP: asked for 2, gets 1.
        let q = TapQueue::open_all("snio-sq", 2, &o).unwrap();
        assert_eq!(q.len(), 1);
        drop(q);
        // Existing multi-queue TAP: 3 queues; asked for 1, still attaches.
        assert_eq!(TapQueue::open_all("snio-mq", 3, &o).unwrap().len(), 3);
        assert_eq!(TapQueue::open_all("snio-mq", 1, &o).unwrap().len(), 1);
        // Missing TAP: created multi-queue, gone when closed (not persistent).
        let q = TapQueue::open_all("snio-new", 2, &o).unwrap();
        assert_eq!(q.len(), 2);
        assert!(ifinfo::exists("snio-new"));
        drop(q);
        // The kernel unregisters the device after the last close; on a
        // loaded machine that can take a moment (bounded wait).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while ifinfo::exists("snio-new") && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!ifinfo::exists("snio-new"), "non-persistent TAP removed on close");
        // Persistent: survives close, loses carrier.
        let q = TapQueue::open_all(
            "snio-per",
            1,
            &TapOptions { persist: true, bring_up: true, uring: true, offload: false },
        )
        .unwrap();
        assert_eq!(ifinfo::link_state("snio-per").unwrap(), LinkState::Up);
        drop(q);
        assert!(ifinfo::exists("snio-per"));
        // The kernel drops the carrier when the last queue detaches; on a
        // loaded machine the change can take a moment to show (bounded wait).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while ifinfo::link_state("snio-per").unwrap() != LinkState::Down && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(ifinfo::link_state("snio-per").unwrap(), LinkState::Down, "no queue attached: no carrier");
        // Busy: a second single-queue attach to a TAP in use fails, naming it.
        let _held = TapQueue::open_all("snio-sq", 1, &o).unwrap();
        let e = TapQueue::open_all("snio-sq", 1, &o).err().expect("busy").to_string();
        assert!(e.starts_with("snio-sq: TUNSETIFF: "), "{e}");
    });
}

#[test]
#[ignore = "needs root"]
fn tap_queue_is_nonblocking_and_pollable() {
    require_root();
    let ns = Netns::new("tapnb");
    let mut qs = ns.run(|| TapQueue::open_all("snio-nb", 1, &TapOptions::default()).unwrap());
    let q: &mut dyn LinkQueue = &mut qs[0];
    assert!(q.poll_fd().is_some());
    let mut pool = PacketPool::new(8, DEFAULT_BUF_SIZE);
    let mut out = Vec::with_capacity(8);
    let t = std::time::Instant::now();
    // Nothing waits (IPv6 is off in the namespace): returns at once. A
    // blocking read would never return, so any bound tells the two apart;
    // 5 s, not 0.5 s: a test thread on a loaded 2-core machine can wait
    // that long for a CPU.
    let _ = q.recv(&mut pool, &mut out, 8);
    assert!(t.elapsed() < Duration::from_secs(5));
    for p in out.drain(..) {
        pool.free(p);
    }
    assert_eq!(pool.available(), 8, "buffers go back to the pool");
}

#[test]
#[ignore = "needs root"]
fn batched_writes_reach_the_kernel_each_as_one_frame() {
    require_root();
    let ns = Netns::new("tapur");
    let mut qs = ns.run(|| TapQueue::open_all("snio-ur", 1, &TapOptions::default()).unwrap());
    ns.ip(&["addr", "add", "10.66.0.1/24", "dev", "snio-ur"]);
    let q = &mut qs[0];
    assert!(q.batch_writes(), "this kernel has io_uring");
    let stats = q.stats();
    let mut pool = PacketPool::new(256, DEFAULT_BUF_SIZE);
    // Ten ARP requests from ten addresses, one send: the kernel answers
    // each (so each write was one whole frame), and the buffers are back.
    let before = pool.available();
    let mut tx: Vec<PacketBuf> = (0..10u8)
        .map(|i| {
            // From the pool, like the stack's frames.
            let f = arp_request(MY_MAC, [10, 66, 0, 10 + i], KERNEL_IP);
            let mut p = pool.alloc().unwrap();
            p.spare_mut()[..f.len()].copy_from_slice(&f);
            p.set_len(f.len()).unwrap();
            p
        })
        .collect();
    assert_eq!(q.send(&mut pool, &mut tx), 10);
    assert!(tx.is_empty());
    assert_eq!(pool.available(), before, "every buffer back in the pool");
    let c = stats.snapshot();
    assert_eq!((c.tx_frames, c.tx_errors, c.tx_busy), (10, 0, 0));
    let mut asked = std::collections::BTreeSet::new();
    recv_until(q, &mut pool, Duration::from_secs(3), |p| {
        let f = p.data();
        if f.len() >= 42 && ethertype(f) == 0x0806 && f[20..22] == [0, 2] && f[28..32] == KERNEL_IP {
            asked.insert(f[41]);
        }
        asked.len() == 10
    });
    assert_eq!(asked, (10..20u8).collect(), "an answer to each request");
    // One frame alone goes by write(2), counted the same.
    let mut one = vec![PacketBuf::from_slice(&arp_request(MY_MAC, [10, 66, 0, 30], KERNEL_IP))];
    assert_eq!(q.send(&mut pool, &mut one), 1);
    assert_eq!(stats.snapshot().tx_frames, 11);
}

/// A frame longer than a pool buffer is counted as oversize and dropped,
/// and the frames after it are read: through the ring (a provided buffer
/// too short for the frame: tun drops it, the read fails and is armed
/// again) and through readv(2) (the overflow iovec).
#[test]
#[ignore = "needs root"]
fn an_oversize_frame_is_counted_and_the_next_is_read() {
    for uring in [true, false] {
        require_root();
        let ns = Netns::new(if uring { "tapov" } else { "tapovn" });
        let opts = TapOptions { uring, ..TapOptions::default() };
        let mut qs = ns.run(|| TapQueue::open_all("snio-ov", 1, &opts).unwrap());
        ns.ip(&["link", "set", "snio-ov", "mtu", "3000"]);
        ns.ip(&["addr", "add", "10.66.0.1/24", "dev", "snio-ov"]);
        ns.ip(&["neigh", "add", "10.66.0.2", "lladdr", "02:00:00:66:00:02", "dev", "snio-ov"]);
        let q = &mut qs[0];
        let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
        // The kernel sends a 2,542-byte echo request (longer than the 2,048
        // bytes of a buffer), then a short one.
        // (No one answers: ping's exit status is not the test's.)
        ns.exec(&["sh", "-c", "ping -c 1 -W 1 -s 2500 10.66.0.2; ping -c 1 -W 1 -s 100 10.66.0.2; true"]);
        let short = recv_until(q, &mut pool, Duration::from_secs(3), |p| {
            let f = p.data();
            f.len() == 14 + 20 + 8 + 100 && ethertype(f) == 0x0800 && f[23] == 1
        });
        assert!(short, "the short echo request after the long one is read (uring {uring})");
        let s = q.stats().snapshot();
        assert_eq!(s.rx_oversize, 1, "uring {uring}: {s:?}");
        assert_eq!(s.rx_errors + s.rx_nobuf + s.rx_nobuf_drops, 0, "uring {uring}: {s:?}");
        assert_eq!(q.reads_through_ring(), uring);
        assert_eq!(pool.available(), 64);
    }
}
