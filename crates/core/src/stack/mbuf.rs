//! `netstat -m` from the control thread: the workers' published pool
//! levels with the spill, the control pool, the hold queues and the
//! references on interfaces and route snapshots (`crate::mbuf`).

use super::Stack;
use crate::mbuf::{read_pool, read_worker, BufferView, IfRefs};
use std::sync::Arc;

impl Stack {
    /// The buffer and reference view, read now. Old route snapshots no
    /// reader holds are freed first (as every control call does), so what
    /// is left retired is really held.
    pub fn buffer_view(&self) -> BufferView {
        let workers = (0..self.config.workers.max(1)).map(|w| read_worker(self.buffers.get(w))).collect();
        let ifs = self.ifaces.load_full();
        let interfaces = ifs
            .iter()
            .map(|i| IfRefs {
                name: i.name().to_string(),
                index: i.index().0,
                generation: i.generation(),
                // The snapshot loaded here holds none of its own: the
                // count is the table's and every other holder's.
                refs: Arc::strong_count(i),
            })
            .collect();
        let routes = self
            .routes
            .table_ids()
            .into_iter()
            .map(|t| {
                let v4 = self.routes.snapshot(t).map_or(0, |s| s.len());
                let v6 = self.routes.snapshot6(t).map_or(0, |s| s.len());
                (t, v4, v6)
            })
            .collect();
        BufferView {
            workers,
            spill: self.spill.len(),
            control: read_pool(&self.control_pool.lock()),
            held_arp: self.arp.held_total(),
            held_nd6: self.nd6.held_total(),
            interfaces,
            if_allocated: self.ifaces.live_count(),
            routes,
            routes_retired: self.routes.reap(),
        }
    }
}
