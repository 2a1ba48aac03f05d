//! The packets a neighbor table holds while it resolves a next hop, ARP's
//! (`arp/`) and IPv6 neighbor discovery's (`nd6/`) alike: a queue per entry
//! bounded per entry and by a total over the table (OpenBSD's la_hold_total
//! / ln_hold_total), filled as mq_push does.

use crate::packet::PacketBuf;
use crate::percpu::Counter;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Holds `frame` on the entry's queue `q`. Under the table's limit
/// (`total` counts what every entry holds, `max_total` bounds it) the
/// oldest held packet makes room when the entry holds `per_entry`
/// already (mq_push); over it, the entry's queue is purged (each purged
/// packet handed to `purged`) and the frame dropped. Every packet dropped
/// counts in `full`. Returns the packet to free now, if any.
pub(crate) fn push(
    total: &AtomicUsize,
    q: &mut VecDeque<PacketBuf>,
    frame: PacketBuf,
    per_entry: usize,
    max_total: usize,
    full: &Counter,
    purged: impl FnMut(PacketBuf),
) -> Option<PacketBuf> {
    let mut dropped = None;
    if total.fetch_add(1, Ordering::Relaxed) < max_total {
        if q.len() >= per_entry {
            // mq_push: the oldest makes room.
            if let Some(old) = q.pop_front() {
                total.fetch_sub(1, Ordering::Relaxed);
                full.inc();
                dropped = Some(old);
            }
        }
        if per_entry > 0 {
            q.push_back(frame);
        } else {
            total.fetch_sub(1, Ordering::Relaxed);
            full.inc();
            dropped = Some(frame);
        }
    } else {
        // All hold queues are full: purge this one and drop the packet.
        let n = q.len();
        total.fetch_sub(n + 1, Ordering::Relaxed);
        full.add(n as u64 + 1);
        q.drain(..).for_each(purged);
        dropped = Some(frame);
    }
    dropped
}
