//! pflog: logged packets as pcap records with OpenBSD's `pfloghdr`
//! (DLT_PFLOG, link type 117), which `tcpdump -n -e -r FILE` decodes as
//! `rule N/(match) block in on em0: …`.
//!
//! Workers never write files: `PflogQueue::push` copies the header and the
//! packet into a record taken from a free list and appends it to a bounded
//! queue under a short lock (dropping and counting when the queue is
//! full); the daemon's writer thread calls `drain_to` with an open file.

use crate::addr::{Af, PfAddr};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// pcap link type for pflog.
pub const DLT_PFLOG: u32 = 117;
/// `sizeof(struct pfloghdr)`, padding included.
pub const PFLOG_HDRLEN: usize = 100;
/// BSD address family numbers (as the header carries them).
pub const BSD_AF_INET: u8 = 2;
pub const BSD_AF_INET6: u8 = 24;
/// pf actions as the header carries them.
pub const PF_PASS: u8 = 0;
pub const PF_DROP: u8 = 1;
pub const PF_MATCH: u8 = 12;
/// pf directions.
pub const PF_IN: u8 = 1;
pub const PF_OUT: u8 = 2;

const SNAPLEN: usize = 65535;

/// What a log record says about its packet.
#[derive(Debug, Clone, Copy)]
pub struct LogMeta<'a> {
    pub action: u8,
    pub reason: u8,
    pub ifname: &'a str,
    /// Rule number; `None` for the default rule (logged as -1). For a
    /// rule inside an anchor, the anchor rule's number.
    pub rulenr: Option<u32>,
    /// The rule's number inside its anchor; `None` in the main ruleset.
    pub subrulenr: Option<u32>,
    /// The anchor's name (its last path component); "" for the main ruleset.
    pub ruleset: &'a str,
    pub dir: u8,
    pub af: Af,
    pub src: PfAddr,
    pub dst: PfAddr,
    pub sport: u16,
    pub dport: u16,
}

/// Writes the 100-byte `pfloghdr` into `out`.
pub fn write_header(m: &LogMeta, out: &mut [u8; PFLOG_HDRLEN]) {
    out.fill(0);
    out[0] = PFLOG_HDRLEN as u8; // length
    let af = if m.af == Af::Inet6 { BSD_AF_INET6 } else { BSD_AF_INET };
    out[1] = af; // af
    out[2] = m.action;
    out[3] = m.reason;
    let n = m.ifname.len().min(15);
    out[4..4 + n].copy_from_slice(&m.ifname.as_bytes()[..n]); // ifname[16]
    let n = m.ruleset.len().min(15);
    out[20..20 + n].copy_from_slice(&m.ruleset.as_bytes()[..n]); // ruleset[16]
    out[36..40].copy_from_slice(&m.rulenr.unwrap_or(u32::MAX).to_be_bytes()); // rulenr
    out[40..44].copy_from_slice(&m.subrulenr.unwrap_or(u32::MAX).to_be_bytes()); // subrulenr
    out[44..48].copy_from_slice(&u32::MAX.to_be_bytes()); // uid: none
    out[48..52].copy_from_slice(&(-1i32).to_be_bytes()); // pid: none
    out[52..56].copy_from_slice(&0u32.to_be_bytes()); // rule_uid
    out[56..60].copy_from_slice(&0u32.to_be_bytes()); // rule_pid
    out[60] = m.dir;
    // 61: rewritten, 62: naf, 63: pad
    out[62] = af;
    out[64..80].copy_from_slice(&m.src.octets()); // saddr (pf_addr, 16)
    out[80..96].copy_from_slice(&m.dst.octets()); // daddr
    out[96..98].copy_from_slice(&m.sport.to_be_bytes());
    out[98..100].copy_from_slice(&m.dport.to_be_bytes());
}

/// The pcap file header for DLT_PFLOG.
pub fn pcap_file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&(SNAPLEN as u32).to_le_bytes());
    h[20..24].copy_from_slice(&DLT_PFLOG.to_le_bytes());
    h
}

struct Record {
    /// Nanoseconds of the injected clock when logged.
    at: u64,
    /// pflog header + packet.
    bytes: Vec<u8>,
}

struct Inner {
    ready: VecDeque<Record>,
    free: Vec<Vec<u8>>,
}

/// A bounded queue of log records between workers and the writer.
pub struct PflogQueue {
    inner: Mutex<Inner>,
    capacity: usize,
    pub logged: AtomicU64,
    pub dropped: AtomicU64,
}

impl PflogQueue {
    pub fn new(capacity: usize) -> PflogQueue {
        PflogQueue {
            inner: Mutex::new(Inner { ready: VecDeque::with_capacity(capacity), free: Vec::new() }),
            capacity,
            logged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues one packet (`pkt` starts at the IPv4 header). Never blocks
    /// on I/O; a full queue drops the record and counts it.
    pub fn push(&self, meta: &LogMeta, pkt: &[u8], now_ns: u64) {
        let mut hdr = [0u8; PFLOG_HDRLEN];
        write_header(meta, &mut hdr);
        let caplen = pkt.len().min(SNAPLEN - PFLOG_HDRLEN);
        let mut g = self.inner.lock();
        if g.ready.len() >= self.capacity {
            drop(g);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut b = g.free.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(&hdr);
        b.extend_from_slice(&pkt[..caplen]);
        g.ready.push_back(Record { at: now_ns, bytes: b });
        drop(g);
        self.logged.fetch_add(1, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes queued records as pcap records. `wall_offset_ns` turns the
    /// clock's nanoseconds into nanoseconds since the Unix epoch (the
    /// daemon computes it once: wall time minus clock time). Returns the
    /// number written.
    pub fn drain_to(&self, w: &mut dyn Write, wall_offset_ns: i128) -> io::Result<usize> {
        let batch: Vec<Record> = {
            let mut g = self.inner.lock();
            g.ready.drain(..).collect()
        };
        let n = batch.len();
        let mut free = Vec::with_capacity(n);
        for r in batch {
            let t = (r.at as i128 + wall_offset_ns).max(0) as u128;
            let mut rh = [0u8; 16];
            rh[0..4].copy_from_slice(&((t / 1_000_000_000) as u32).to_le_bytes());
            rh[4..8].copy_from_slice(&((t % 1_000_000_000 / 1000) as u32).to_le_bytes());
            rh[8..12].copy_from_slice(&(r.bytes.len() as u32).to_le_bytes());
            rh[12..16].copy_from_slice(&(r.bytes.len() as u32).to_le_bytes());
            w.write_all(&rh)?;
            w.write_all(&r.bytes)?;
            free.push(r.bytes);
        }
        w.flush()?;
        let mut g = self.inner.lock();
        for b in free {
            if g.free.len() < self.capacity {
                g.free.push(b);
            }
        }
        Ok(n)
    }
}

/// Opens (creating or appending to) a pflog pcap file, writing the file
/// header when the file is new or empty.
pub fn open_pcap(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // 0600: logged packets are other people's traffic.
    let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    if f.metadata()?.len() == 0 {
        f.write_all(&pcap_file_header())?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_pcap_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("softnet-pflog-mode-{}.pcap", std::process::id()));
        let _ = std::fs::remove_file(&path);
        drop(open_pcap(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::remove_file(&path).unwrap();
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn header_bytes_follow_openbsd_pfloghdr() {
        let m = LogMeta {
            action: PF_DROP,
            reason: 0,
            ifname: "em0",
            rulenr: Some(3),
            subrulenr: None,
            ruleset: "",
            dir: PF_IN,
            af: Af::Inet,
            src: "10.0.1.2".parse().unwrap(),
            dst: "10.0.2.2".parse().unwrap(),
            sport: 40000,
            dport: 22,
        };
        let mut h = [0u8; PFLOG_HDRLEN];
        write_header(&m, &mut h);
        assert_eq!(h[0], 100);
        assert_eq!(h[1], 2);
        assert_eq!(h[2], 1);
        assert_eq!(&h[4..8], b"em0\0");
        assert_eq!(&h[36..40], &[0, 0, 0, 3]);
        assert_eq!(&h[40..44], &[0xff; 4]);
        assert_eq!(h[60], 1);
        assert_eq!(&h[64..68], &[10, 0, 1, 2]);
        assert_eq!(&h[80..84], &[10, 0, 2, 2]);
        assert_eq!(&h[96..100], &[0x9c, 0x40, 0, 22]);
    }

    /// An IPv6 packet's record: af and naf AF_INET6 (24), both 16-byte
    /// addresses whole.
    #[test]
    fn ipv6_header_carries_af_inet6_and_whole_addresses() {
        let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            ("2001:db8::1".parse().unwrap(), "2001:db8:1::2".parse().unwrap());
        let m = LogMeta {
            action: PF_PASS,
            reason: 0,
            ifname: "em0",
            rulenr: Some(0),
            subrulenr: None,
            ruleset: "",
            dir: PF_OUT,
            af: Af::Inet6,
            src: PfAddr::from_v6(src),
            dst: PfAddr::from_v6(dst),
            sport: 1,
            dport: 2,
        };
        let mut h = [0u8; PFLOG_HDRLEN];
        write_header(&m, &mut h);
        assert_eq!((h[1], h[62]), (BSD_AF_INET6, BSD_AF_INET6));
        assert_eq!(&h[64..80], &src.octets());
        assert_eq!(&h[80..96], &dst.octets());
    }

    #[test]
    fn queue_is_bounded_and_drains_as_pcap() {
        let q = PflogQueue::new(1);
        let m = LogMeta {
            action: PF_PASS,
            reason: 0,
            ifname: "em0",
            rulenr: Some(0),
            subrulenr: None,
            ruleset: "",
            dir: PF_OUT,
            af: Af::Inet,
            src: PfAddr::from_v4(std::net::Ipv4Addr::LOCALHOST),
            dst: PfAddr::from_v4(std::net::Ipv4Addr::LOCALHOST),
            sport: 0,
            dport: 0,
        };
        q.push(&m, &[0x45; 20], 1_500_000_000);
        q.push(&m, &[0x45; 20], 1_600_000_000);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 1);
        let mut out = pcap_file_header().to_vec();
        assert_eq!(q.drain_to(&mut out, 0).unwrap(), 1);
        assert_eq!(&out[20..24], &117u32.to_le_bytes());
        assert_eq!(&out[24..28], &1u32.to_le_bytes());
        assert_eq!(&out[28..32], &500_000u32.to_le_bytes());
        assert_eq!(&out[32..36], &120u32.to_le_bytes());
        assert_eq!(out.len(), 24 + 16 + 120);
        assert!(q.is_empty());
    }
}
