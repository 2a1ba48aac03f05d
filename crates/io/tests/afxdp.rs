//! AF_XDP link over a veth pair between two namespaces the tests create
//! (root; `#[ignore = "needs root"]`). The peer end is driven through
//! AF_PACKET. A kernel that refuses AF_XDP or BPF fails the tests.

mod common;

use common::*;
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool, DEFAULT_BUF_SIZE};
use softnet_io::{PacketOptions, PacketQueue, XdpOptions, XdpQueue};
use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0x78, 0, 1];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0x78, 0, 2];
const MARK: &[u8; 4] = b"snxd";

struct Pair {
    na: Netns,
    nb: Netns,
}

/// Namespaces joined by veth `snxd-a` -- `snxd-b`, `queues` queues each way.
fn pair(tag: &str, queues: usize) -> Pair {
    let na = Netns::new(&format!("{tag}a"));
    let nb = Netns::new(&format!("{tag}b"));
    let q = queues.to_string();
    na.ip(&[
        "link",
        "add",
        "snxd-a",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        "snxd-b",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        &nb.name,
    ]);
    na.ip(&["link", "set", "snxd-a", "address", "02:00:00:78:00:01"]);
    nb.ip(&["link", "set", "snxd-b", "address", "02:00:00:78:00:02"]);
    na.ip(&["link", "set", "snxd-a", "up"]);
    nb.ip(&["link", "set", "snxd-b", "up"]);
    Pair { na, nb }
}

/// Opens XDP queues on `snxd-a`. A kernel that refuses AF_XDP fails the
/// test: it does not pass without having run.
fn open_xdp(p: &Pair, queues: usize, opts: &XdpOptions) -> Vec<XdpQueue> {
    match p.na.run(|| XdpQueue::open_all("snxd-a", queues, opts)) {
        Ok(q) => q,
        Err(e) => panic!("opening AF_XDP: {e}"),
    }
}

fn peer(p: &Pair) -> PacketQueue {
    p.nb.run(|| PacketQueue::open_all("snxd-b", 1, &PacketOptions::default()).unwrap()).pop().unwrap()
}

/// A UDP frame (`to` from `from`) of flow `flow` carrying MARK + `seq`.
fn frame(to: [u8; 6], from: [u8; 6], flow: u16, seq: u32) -> Vec<u8> {
    marked_frame(to, from, 78, MARK, flow, seq)
}

fn test_seq(f: &[u8]) -> Option<u32> {
    marked_seq(f, MARK)
}

/// Whether `ip -d link show snxd-a` shows an XDP program.
fn xdp_attached(p: &Pair) -> bool {
    let o = Command::new("ip").args(["-n", &p.na.name, "-d", "link", "show", "snxd-a"]).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    s.contains("prog/xdp")
}

#[test]
#[ignore = "needs root"]
fn frames_in_through_xdp_and_out_to_the_peer() {
    require_root();
    let p = pair("rx", 1);
    let mut a = open_xdp(&p, 1, &XdpOptions::default());
    assert_eq!(a.len(), 1);
    assert!(xdp_attached(&p), "program attached");
    eprintln!("XDP attached in {} mode", if a[0].native() { "native" } else { "generic" });
    let mut b = peer(&p);
    let mut pool = PacketPool::new(512, DEFAULT_BUF_SIZE);

    // Peer -> XDP.
    let frames: Vec<Vec<u8>> = (0..200).map(|i| frame(MAC_A, MAC_B, 1, i)).collect();
    assert_eq!(send_all(&mut b, &mut pool, &frames), 200);
    let mut got = Vec::new();
    recv_until(&mut a[0], &mut pool, Duration::from_secs(3), |f| {
        if let Some(s) = test_seq(f.data()) {
            assert_eq!(f.data(), &frames[s as usize][..], "frame arrives unchanged");
            got.push(s);
        }
        got.len() == 200
    });
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "all frames, in order");

    // XDP -> peer.
    let frames: Vec<Vec<u8>> = (0..200).map(|i| frame(MAC_B, MAC_A, 2, i)).collect();
    assert_eq!(send_all(&mut a[0], &mut pool, &frames), 200);
    let mut got = Vec::new();
    recv_until(&mut b, &mut pool, Duration::from_secs(3), |f| {
        if let Some(s) = test_seq(f.data()) {
            assert_eq!(f.data(), &frames[s as usize][..], "frame leaves unchanged");
            got.push(s);
        }
        got.len() == 200
    });
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "all frames, in order");
    let s = a[0].stats().snapshot();
    assert_eq!((s.rx_frames >= 200, s.tx_frames, s.tx_oversize, s.tx_busy, s.tx_errors), (true, 200, 0, 0, 0));
    assert_eq!(a[0].rx_losses(), Default::default());
    assert_eq!(pool.available(), 512, "every buffer back in the pool");
}

#[test]
#[ignore = "needs root"]
fn tx_chunks_are_recycled_through_the_completion_ring() {
    require_root();
    let p = pair("cq", 1);
    // 64 chunks: 32 for TX, far fewer than the frames sent.
    let opts = XdpOptions { frames: 64, ..Default::default() };
    let mut a = open_xdp(&p, 1, &opts);
    let mut b = peer(&p);
    let mut pool = PacketPool::new(512, DEFAULT_BUF_SIZE);
    let mut seen = HashSet::new();
    let mut sent = 0;
    for round in 0..40u32 {
        let frames: Vec<Vec<u8>> = (0..16).map(|i| frame(MAC_B, MAC_A, 3, round * 16 + i)).collect();
        sent += send_all(&mut a[0], &mut pool, &frames);
        recv_until(&mut b, &mut pool, Duration::from_millis(20), |f| {
            if let Some(s) = test_seq(f.data()) {
                seen.insert(s);
            }
            false
        });
    }
    recv_until(&mut b, &mut pool, Duration::from_secs(2), |f| {
        if let Some(s) = test_seq(f.data()) {
            seen.insert(s);
        }
        seen.len() == sent
    });
    let s = a[0].stats().snapshot();
    assert_eq!(sent, 640, "no frame refused ({s:?})");
    assert_eq!(seen.len(), sent, "every frame sent arrives");
    // And RX keeps working after the fill ring went round several times.
    let frames: Vec<Vec<u8>> = (0..300).map(|i| frame(MAC_A, MAC_B, 4, i)).collect();
    assert_eq!(send_all(&mut b, &mut pool, &frames), 300);
    let mut got = 0;
    recv_until(&mut a[0], &mut pool, Duration::from_secs(3), |f| {
        got += test_seq(f.data()).is_some() as usize;
        got == 300
    });
    // 32 RX chunks: a burst of 300 may overflow the RX side; what is lost is
    // counted by the kernel, never silently.
    let lost = a[0].rx_losses().dropped as usize;
    assert!(got > 0 && got + lost >= 300, "got {got}, counted lost {lost}");
}

#[test]
#[ignore = "needs root"]
fn oversize_and_runt_frames_are_counted() {
    require_root();
    let p = pair("ov", 1);
    let mut a = open_xdp(&p, 1, &XdpOptions::default());
    let mut b = peer(&p);
    // TX: a runt and a frame longer than MTU 1500 are refused and counted.
    let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
    let mut big = frame(MAC_B, MAC_A, 5, 1);
    big.resize(1515, 0);
    let mut batch = vec![
        PacketBuf::from_slice(&[0u8; 10]),
        PacketBuf::from_slice(&big),
        PacketBuf::from_slice(&frame(MAC_B, MAC_A, 5, 2)),
    ];
    assert_eq!(a[0].send(&mut pool, &mut batch), 1);
    let s = a[0].stats().snapshot();
    assert_eq!((s.tx_frames, s.tx_oversize), (1, 2));

    // RX: a frame longer than a (small) pool buffer is counted and dropped,
    // the next one still arrives.
    let mut small = PacketPool::new(64, 512);
    let max = small.alloc().map(|b| b.max_len()).unwrap();
    let mut long = frame(MAC_A, MAC_B, 6, 1);
    long.resize(max + 100, 0);
    let frames = vec![long, frame(MAC_A, MAC_B, 6, 2)];
    assert_eq!(send_all(&mut b, &mut pool, &frames), 2);
    let mut got = Vec::new();
    recv_until(&mut a[0], &mut small, Duration::from_secs(3), |f| {
        got.extend(test_seq(f.data()));
        got.contains(&2)
    });
    assert_eq!(got, vec![2]);
    let s = a[0].stats().snapshot();
    assert_eq!(s.rx_oversize, 1);
    assert_eq!(a[0].rx_losses().errors, 1);
}

#[test]
#[ignore = "needs root"]
fn dropping_the_queues_detaches_the_program() {
    require_root();
    let p = pair("dt", 1);
    assert!(!xdp_attached(&p));
    let a = open_xdp(&p, 1, &XdpOptions::default());
    assert!(xdp_attached(&p), "attached while the queue lives");
    drop(a);
    let end = Instant::now() + Duration::from_secs(2);
    while xdp_attached(&p) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!xdp_attached(&p), "detached once the queues are gone");
    // And it can be attached again.
    let a = open_xdp(&p, 1, &XdpOptions::default());
    assert!(xdp_attached(&p));
    drop(a);
}

#[test]
#[ignore = "needs root"]
fn queues_are_capped_at_the_device_queue_count() {
    require_root();
    let p = pair("mq", 2);
    let mut a = open_xdp(&p, 4, &XdpOptions::default());
    assert_eq!(a.len(), 2, "a 2-queue veth gives 2 queues for 4 workers");
    assert_eq!((a[0].queue(), a[1].queue()), (0, 1));
    // Frames of many flows from the peer all arrive, on one queue or the other.
    let mut b = peer(&p);
    let mut pool = PacketPool::new(1024, DEFAULT_BUF_SIZE);
    let n = 300u32;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(MAC_A, MAC_B, i as u16, i)).collect();
    assert_eq!(send_all(&mut b, &mut pool, &frames), n as usize);
    let mut seen = HashSet::new();
    let end = Instant::now() + Duration::from_secs(3);
    let mut batch = Vec::with_capacity(64);
    while seen.len() < n as usize && Instant::now() < end {
        let mut got = 0;
        for q in a.iter_mut() {
            got += q.recv(&mut pool, &mut batch, 64);
            for f in batch.drain(..) {
                seen.extend(test_seq(f.data()));
                pool.free(f);
            }
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(seen.len(), n as usize);
    // Each queue sends too.
    for (i, q) in a.iter_mut().enumerate() {
        let f = vec![frame(MAC_B, MAC_A, 7, 1000 + i as u32)];
        assert_eq!(send_all(q, &mut pool, &f), 1);
    }
    let mut got = HashSet::new();
    recv_until(&mut b, &mut pool, Duration::from_secs(3), |f| {
        got.extend(test_seq(f.data()));
        got.contains(&1000) && got.contains(&1001)
    });
    assert!(got.contains(&1000) && got.contains(&1001));
}

#[test]
#[ignore = "needs root"]
fn queues_are_capped_at_the_smaller_of_rx_and_tx_queues() {
    require_root();
    let na = Netns::new("uqa");
    let nb = Netns::new("uqb");
    na.ip(&[
        "link",
        "add",
        "snxd-a",
        "numtxqueues",
        "1",
        "numrxqueues",
        "3",
        "type",
        "veth",
        "peer",
        "name",
        "snxd-b",
        "netns",
        &nb.name,
    ]);
    na.ip(&["link", "set", "snxd-a", "up"]);
    nb.ip(&["link", "set", "snxd-b", "up"]);
    let p = Pair { na, nb };
    let a = open_xdp(&p, 4, &XdpOptions::default());
    assert_eq!(a.len(), 1, "3 RX queues but 1 TX queue: one AF_XDP queue");
}

#[test]
#[ignore = "needs root"]
fn open_errors_name_the_device() {
    require_root();
    let ns = Netns::new("xe");
    let e = ns.run(|| XdpQueue::open_all("snxd-nope", 1, &XdpOptions::default())).err().expect("no such device");
    let m = e.to_string();
    assert!(m.starts_with("snxd-nope: "), "{m}");
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{m}");
    let e = XdpQueue::open_all("bad/name", 1, &XdpOptions::default()).err().unwrap();
    assert!(e.to_string().contains("not a valid device name"), "{e}");
    let e = XdpQueue::open_all("lo", 1, &XdpOptions { frames: 3, ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("power of two"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn generic_mode_works_too() {
    require_root();
    let p = pair("sk", 1);
    let opts = XdpOptions { force_skb_mode: true, ..Default::default() };
    let mut a = open_xdp(&p, 1, &opts);
    assert!(!a[0].native());
    let o = Command::new("ip").args(["-n", &p.na.name, "-d", "link", "show", "snxd-a"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("xdpgeneric"), "generic mode shown by ip");
    let mut b = peer(&p);
    let mut pool = PacketPool::new(256, DEFAULT_BUF_SIZE);
    let frames: Vec<Vec<u8>> = (0..50).map(|i| frame(MAC_A, MAC_B, 1, i)).collect();
    assert_eq!(send_all(&mut b, &mut pool, &frames), 50);
    let mut got = 0;
    recv_until(&mut a[0], &mut pool, Duration::from_secs(3), |f| {
        got += test_seq(f.data()).is_some() as usize;
        got == 50
    });
    assert_eq!(got, 50);
    let frames: Vec<Vec<u8>> = (0..50).map(|i| frame(MAC_B, MAC_A, 2, i)).collect();
    assert_eq!(send_all(&mut a[0], &mut pool, &frames), 50);
    let mut got = 0;
    recv_until(&mut b, &mut pool, Duration::from_secs(3), |f| {
        got += test_seq(f.data()).is_some() as usize;
        got == 50
    });
    assert_eq!(got, 50);
}

#[test]
#[ignore = "needs root"]
fn a_device_already_attached_is_a_clear_error() {
    require_root();
    let p = pair("bz", 1);
    let a = open_xdp(&p, 1, &XdpOptions::default());
    let t = Instant::now();
    let e = p.na.run(|| XdpQueue::open_all("snxd-a", 1, &XdpOptions::default())).err().expect("the queue is taken");
    let m = e.to_string();
    assert!(m.starts_with("snxd-a: "), "{m}");
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{m}");
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(a);
}
