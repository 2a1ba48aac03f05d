//! pf tables: sets of IPv4 prefixes matched by longest prefix, with
//! negated entries (`!10.1.0.0/16` inside `10.0.0.0/8` carves a hole), as
//! pf's radix tables do, and per-entry counters (`pfctl -T show -v`).
//!
//! The lookup structure is one hash map per prefix length, probed from
//! the longest length that holds entries down to the shortest: at most 33
//! probes, usually a handful. Tables are changed by the control thread
//! (`pfctl -T add …`) under a write lock; workers take the read lock.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::model::{IpNet, TableEntry};

/// Counter slots per entry: direction (in, out) × (block, pass, xpass).
const STAT_SLOTS: usize = 6;

/// What a matching packet did, for the per-entry counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOp {
    Block = 0,
    Pass = 1,
    /// Passed although the table said "not in" (a negated rule).
    XPass = 2,
}

#[derive(Debug, Default)]
struct EntryStats {
    packets: [AtomicU64; STAT_SLOTS],
    bytes: [AtomicU64; STAT_SLOTS],
    /// Seconds since the epoch when the counters were last cleared.
    cleared: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    negated: bool,
    stats: EntryStats,
}

#[derive(Debug, Default)]
struct Inner {
    /// `by_len[l]`: network address (host bits clear) → entry.
    by_len: Vec<HashMap<u32, Entry>>,
    /// Bit `l` set when `by_len[l]` is not empty.
    lens: u64,
    count: usize,
}

impl Inner {
    fn new() -> Inner {
        Inner { by_len: (0..=32).map(|_| HashMap::new()).collect(), lens: 0, count: 0 }
    }

    fn lookup(&self, a: u32) -> Option<(u32, u8, &Entry)> {
        let mut lens = self.lens;
        while lens != 0 {
            let l = 63 - lens.leading_zeros() as u8;
            lens &= !(1u64 << l);
            let net = a & mask(l);
            if let Some(e) = self.by_len[l as usize].get(&net) {
                return Some((net, l, e));
            }
        }
        None
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32) as u32)
    }
}

/// A pf table.
#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub persist: bool,
    pub constant: bool,
    pub counters: bool,
    inner: RwLock<Inner>,
    /// Lookups that found no entry (or a negated one), for `-T show -v`.
    pub no_match: AtomicU64,
}

/// One entry as `show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownEntry {
    pub net: IpNet,
    pub negated: bool,
}

fn v4(net: &IpNet) -> Option<(u32, u8)> {
    match net.addr {
        IpAddr::V4(a) => Some((u32::from(a) & mask(net.prefix), net.prefix.min(32))),
        IpAddr::V6(_) => None,
    }
}

impl Table {
    pub fn new(name: &str) -> Table {
        Table {
            name: name.to_string(),
            persist: false,
            constant: false,
            counters: false,
            inner: RwLock::new(Inner::new()),
            no_match: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds entries; returns how many were new. IPv6 entries are ignored
    /// (this router filters IPv4).
    pub fn add(&self, entries: &[TableEntry]) -> usize {
        let mut g = self.inner.write();
        let mut n = 0;
        for e in entries {
            let Some((net, l)) = v4(&e.net) else { continue };
            let m = &mut g.by_len[l as usize];
            if let std::collections::hash_map::Entry::Vacant(v) = m.entry(net) {
                v.insert(Entry { negated: e.negated, stats: EntryStats::default() });
                n += 1;
            }
            g.lens |= 1u64 << l;
        }
        g.count += n;
        n
    }

    /// Deletes entries (negation must match); returns how many went.
    pub fn delete(&self, entries: &[TableEntry]) -> usize {
        let mut g = self.inner.write();
        let mut n = 0;
        for e in entries {
            let Some((net, l)) = v4(&e.net) else { continue };
            let m = &mut g.by_len[l as usize];
            if m.get(&net).is_some_and(|x| x.negated == e.negated) {
                m.remove(&net);
                n += 1;
                if m.is_empty() {
                    g.lens &= !(1u64 << l);
                }
            }
        }
        g.count -= n;
        n
    }

    /// Replaces the contents; returns (added, deleted).
    pub fn replace(&self, entries: &[TableEntry]) -> (usize, usize) {
        let before: Vec<TableEntry> =
            self.show().into_iter().map(|s| TableEntry { negated: s.negated, net: s.net }).collect();
        let gone: Vec<TableEntry> = before.iter().filter(|b| !entries.contains(b)).cloned().collect();
        let deleted = self.delete(&gone);
        let added = self.add(entries);
        (added, deleted)
    }

    /// Removes every entry; returns how many there were.
    pub fn flush(&self) -> usize {
        let mut g = self.inner.write();
        let n = g.count;
        *g = Inner::new();
        n
    }

    /// Whether `a` is in the table: the longest matching prefix exists and
    /// is not negated.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let g = self.inner.read();
        matches!(g.lookup(u32::from(a)), Some((_, _, e)) if !e.negated)
    }

    /// `contains` that also counts the packet on the matching entry.
    pub fn match_and_count(&self, a: Ipv4Addr, out: bool, op: TableOp, bytes: u64) -> bool {
        let g = self.inner.read();
        match g.lookup(u32::from(a)) {
            Some((_, _, e)) => {
                let slot = if out { 3 } else { 0 } + op as usize;
                e.stats.packets[slot].fetch_add(1, Ordering::Relaxed);
                e.stats.bytes[slot].fetch_add(bytes, Ordering::Relaxed);
                !e.negated
            }
            None => {
                self.no_match.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// `pfctl -T test`: how many of `addrs` match.
    pub fn test(&self, addrs: &[Ipv4Addr]) -> usize {
        addrs.iter().filter(|a| self.contains(**a)).count()
    }

    /// Entries sorted by address then prefix length.
    pub fn show(&self) -> Vec<ShownEntry> {
        let g = self.inner.read();
        let mut v: Vec<(u32, u8, bool)> = vec![];
        for (l, m) in g.by_len.iter().enumerate() {
            for (net, e) in m {
                v.push((*net, l as u8, e.negated));
            }
        }
        v.sort();
        v.into_iter()
            .map(|(net, l, negated)| ShownEntry { net: IpNet::new(IpAddr::V4(net.into()), l), negated })
            .collect()
    }

    /// `pfctl -t T -T show [-v]` text.
    pub fn show_text(&self, verbose: bool) -> String {
        let g = self.inner.read();
        let mut out = String::new();
        for s in self.show() {
            let text = if s.net.is_host() { s.net.addr.to_string() } else { format!("{}/{}", s.net.addr, s.net.prefix) };
            let _ = writeln!(out, "  {}{}", if s.negated { '!' } else { ' ' }, text);
            if verbose {
                let Some((net, l)) = v4(&s.net) else { continue };
                let Some(e) = g.by_len[l as usize].get(&net) else { continue };
                let _ = writeln!(out, "\tCleared:     {}", ctime(e.stats.cleared.load(Ordering::Relaxed)));
                const NAMES: [&str; STAT_SLOTS] =
                    ["In/Block:", "In/Pass:", "In/XPass:", "Out/Block:", "Out/Pass:", "Out/XPass:"];
                for (i, name) in NAMES.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "\t{:<12} [ Packets: {:<18} Bytes: {:<18} ]",
                        name,
                        e.stats.packets[i].load(Ordering::Relaxed),
                        e.stats.bytes[i].load(Ordering::Relaxed)
                    );
                }
            }
        }
        out
    }

    /// Clears the per-entry counters (`-T zero`), stamping `now_epoch`.
    pub fn zero(&self, now_epoch: u64) {
        let g = self.inner.read();
        for m in &g.by_len {
            for e in m.values() {
                for i in 0..STAT_SLOTS {
                    e.stats.packets[i].store(0, Ordering::Relaxed);
                    e.stats.bytes[i].store(0, Ordering::Relaxed);
                }
                e.stats.cleared.store(now_epoch, Ordering::Relaxed);
            }
        }
    }
}

/// `ctime(3)`-style UTC text for seconds since the epoch (no newline).
pub fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86400;
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str, negated: bool) -> TableEntry {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        TableEntry { negated, net: IpNet::new(a.parse().unwrap(), l.parse().unwrap()) }
    }

    #[test]
    fn longest_prefix_wins_and_negated_entries_carve_holes() {
        let t = Table::new("t");
        assert_eq!(t.add(&[e("10.0.0.0/8", false), e("10.1.0.0/16", true), e("10.1.2.3", false)]), 3);
        assert!(t.contains("10.9.9.9".parse().unwrap()));
        assert!(!t.contains("10.1.9.9".parse().unwrap()));
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(t.test(&["10.0.0.1".parse().unwrap(), "11.0.0.1".parse().unwrap()]), 1);
        assert_eq!(t.delete(&[e("10.1.0.0/16", true)]), 1);
        assert!(t.contains("10.1.9.9".parse().unwrap()));
        assert_eq!(t.replace(&[e("192.168.0.0/24", false)]), (1, 2));
        assert_eq!(t.len(), 1);
        assert_eq!(t.flush(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn show_lists_entries_like_pfctl() {
        let t = Table::new("t");
        t.add(&[e("10.0.0.0/8", false), e("10.1.0.0/16", true), e("192.168.1.1", false)]);
        assert_eq!(t.show_text(false), "   10.0.0.0/8\n  !10.1.0.0/16\n   192.168.1.1\n");
        t.match_and_count("192.168.1.1".parse().unwrap(), false, TableOp::Pass, 60);
        let v = t.show_text(true);
        assert!(v.contains("\tCleared:     Thu Jan  1 00:00:00 1970\n"), "{v}");
        assert!(v.contains("\tIn/Pass:     [ Packets: 1                  Bytes: 60                 ]\n"), "{v}");
    }
}
