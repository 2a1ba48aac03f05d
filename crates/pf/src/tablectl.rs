//! The table commands of pfctl (`[-a ANCHOR] -t TABLE -T add|delete|
//! replace|flush|test|show`, `[-a ANCHOR] -sT`, `[-a ANCHOR] -F Tables`)
//! as pf_ioctl.c's DIOCR* handlers and pf_table.c's pfr_add_tables,
//! pfr_add_addrs, pfr_del_addrs, pfr_set_addrs, pfr_clr_addrs,
//! pfr_tst_addrs, pfr_get_addrs, pfr_get_tables and pfr_clr_tables run
//! them. A table is named by its anchor and its name (`TableKey`): each
//! anchor has a namespace of its own, and a command reaches only the
//! tables that are active there.

use std::sync::Arc;

use crate::filter::Pf;
use crate::model::Limit;
use crate::table::{Table, TableKey};

/// Text a table command prints (pfctl writes these to stderr).
pub type TableMsg = String;

/// pfctl's report of ENOMEM from a table ioctl (a pool limit reached).
const NO_MEMORY: &str = "pfctl: Cannot allocate memory";

/// pfctl's report of ESRCH: no active table of that name in that anchor.
const NO_TABLE: &str = "pfctl: Table does not exist.";

impl From<&str> for TableKey {
    /// A name alone is a table of the main ruleset.
    fn from(name: &str) -> TableKey {
        TableKey::main(name)
    }
}

impl Pf {
    /// A table by where it lives, active or not: the tree's, or one
    /// `-T add` made since the last load.
    fn lookup_table(&self, key: &TableKey) -> Option<Arc<Table>> {
        let rs = self.inner.ruleset.load();
        rs.tables.get(key).cloned().or_else(|| self.inner.extra.lock().get(key).cloned())
    }

    /// An active table (what every command but add and replace needs).
    pub fn table(&self, key: impl Into<TableKey>) -> Option<Arc<Table>> {
        self.lookup_table(&key.into()).filter(|t| t.is_active())
    }

    /// pfctl's CREATE_TABLE (pfr_add_tables with PFR_TFLAG_PERSIST) before
    /// `-T add` and `-T replace`: a table that does not exist is made,
    /// persistent, in its anchor's namespace (the anchor made too, as
    /// pf_find_or_create_ruleset does), unless that goes over `set limit
    /// tables`; one that exists but is not active (an anchor's rules name
    /// it without defining it) is made active and persistent. Returns the
    /// table and, when it was made, pfctl's notes.
    fn table_or_create(&self, key: &TableKey) -> Result<(Arc<Table>, String), TableMsg> {
        if let Some(t) = self.lookup_table(key) {
            if t.is_active() {
                return Ok((t, String::new()));
            }
            t.set_active(true);
            t.set_persist(true);
            return Ok((t, self.created_note(key)));
        }
        let (count, _) = self.table_usage();
        let rs = self.inner.ruleset.load_full();
        if count >= rs.opts.limit(Limit::Tables) as usize {
            return Err(NO_MEMORY.to_string());
        }
        let t = Arc::new(Table::in_anchor(&key.anchor, &key.name, true));
        t.set_persist(true);
        if !key.anchor.is_empty() {
            let root = self.lookup_table(&TableKey::main(&key.name));
            t.set_root(Some(root.unwrap_or_else(|| {
                let r = Arc::new(Table::in_anchor("", &key.name, false));
                self.inner.extra.lock().insert(TableKey::main(&key.name), r.clone());
                r
            })));
        }
        self.inner.extra.lock().insert(key.clone(), t.clone());
        // A new anchor: the tree is compiled again so that it exists
        // (`-sA`, `-a NAME -sr`).
        if !key.anchor.is_empty() && rs.node(&key.anchor).is_none() {
            self.recompile().map_err(|e| format!("pfctl: {e}"))?;
        }
        Ok((t, self.created_note(key)))
    }

    /// What pfctl says after making a table: warn_namespace_collision for
    /// its name, then "1 table created.".
    fn created_note(&self, key: &TableKey) -> String {
        let mut s = self.namespace_collisions(Some(&key.name)).map(|w| w + "\n").unwrap_or_default();
        s.push_str("1 table created.\n");
        s
    }

    /// pfctl's warn_namespace_collision: the names an active table of the
    /// main ruleset shares with an active table of some anchor (for
    /// `filter`, that name only), as pfctl warns after a load and after
    /// making a table.
    pub fn namespace_collisions(&self, filter: Option<&str>) -> Option<String> {
        let mut all = self.active_tables();
        // pfr_ktable_compare's order: by name, then by anchor.
        all.sort_by(|a, b| (&a.name, &a.anchor).cmp(&(&b.name, &b.anchor)));
        let (mut coll, mut last) = (0, None);
        let mut global: Option<&str> = None;
        for k in all.iter().filter(|k| filter.is_none_or(|f| f == k.name)) {
            if k.anchor.is_empty() {
                global = Some(&k.name);
            } else if global == Some(k.name.as_str()) {
                coll += 1;
                last = Some(k.name.clone());
                global = None;
            }
        }
        match coll {
            0 => None,
            1 => Some(format!("pfctl: warning: namespace collision with <{}> global table.", last?)),
            n => Some(format!("pfctl: warning: namespace collisions with {n} global tables.")),
        }
    }

    /// Every active table, of every anchor.
    fn active_tables(&self) -> Vec<TableKey> {
        let rs = self.inner.ruleset.load();
        let extra = self.inner.extra.lock();
        let mut v: Vec<TableKey> =
            rs.tables.values().chain(extra.values()).filter(|t| t.is_active()).map(|t| t.key()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Number of tables and of entries in all of them (what `set limit
    /// tables` and `set limit table-entries` bound).
    fn table_usage(&self) -> (usize, usize) {
        let rs = self.inner.ruleset.load();
        let extra = self.inner.extra.lock();
        let all = rs.tables.values().chain(extra.values());
        all.fold((0, 0), |(k, e), t| (k + 1, e + t.len()))
    }

    /// Entries that fit before `set limit table-entries`.
    fn table_room(&self) -> usize {
        let limit = self.inner.ruleset.load().opts.limit(Limit::TableEntries) as usize;
        limit.saturating_sub(self.table_usage().1)
    }

    /// `-T add`: all the entries or, over `set limit table-entries`,
    /// none (pf's entry pool is full).
    pub fn table_add(
        &self,
        key: impl Into<TableKey>,
        entries: &[crate::model::TableEntry],
    ) -> Result<TableMsg, TableMsg> {
        let _g = self.inner.load_lock.lock();
        let (t, note) = self.table_or_create(&key.into())?;
        let n = t.add_within(entries, self.table_room()).ok_or_else(|| NO_MEMORY.to_string())?;
        Ok(format!("{note}{}/{} addresses added.", n, entries.len()))
    }

    pub fn table_delete(
        &self,
        key: impl Into<TableKey>,
        entries: &[crate::model::TableEntry],
    ) -> Result<TableMsg, TableMsg> {
        let t = self.find_table(key)?;
        let n = t.delete(entries);
        Ok(format!("{}/{} addresses deleted.", n, entries.len()))
    }

    pub fn table_replace(
        &self,
        key: impl Into<TableKey>,
        entries: &[crate::model::TableEntry],
    ) -> Result<TableMsg, TableMsg> {
        let _g = self.inner.load_lock.lock();
        let (t, mut s) = self.table_or_create(&key.into())?;
        let (a, d) = t.replace_within(entries, self.table_room()).ok_or_else(|| NO_MEMORY.to_string())?;
        if a > 0 {
            s.push_str(&format!("{a} addresses added.\n"));
        }
        if d > 0 {
            s.push_str(&format!("{d} addresses deleted.\n"));
        }
        if a == 0 && d == 0 {
            s.push_str("no changes.\n");
        }
        Ok(s.trim_end().to_string())
    }

    pub fn table_flush(&self, key: impl Into<TableKey>) -> Result<TableMsg, TableMsg> {
        let t = self.find_table(key)?;
        Ok(format!("{} addresses deleted.", t.flush()))
    }

    /// `-T test`: (message, all matched).
    pub fn table_test(
        &self,
        key: impl Into<TableKey>,
        addrs: &[std::net::IpAddr],
    ) -> Result<(TableMsg, bool), TableMsg> {
        let t = self.find_table(key)?;
        let n = t.test(addrs);
        Ok((format!("{}/{} addresses match.", n, addrs.len()), n == addrs.len()))
    }

    pub fn table_show(&self, key: impl Into<TableKey>, verbose: bool) -> Result<String, TableMsg> {
        Ok(self.find_table(key)?.show_text(verbose))
    }

    fn find_table(&self, key: impl Into<TableKey>) -> Result<Arc<Table>, TableMsg> {
        self.table(key).ok_or_else(|| NO_TABLE.to_string())
    }

    /// The active tables of `anchor`'s namespace by name (`[-a ANCHOR] -sT`,
    /// pfr_get_tables with the anchor as filter).
    pub fn table_names(&self, anchor: &str) -> Vec<String> {
        self.active_tables().into_iter().filter(|k| k.anchor == anchor).map(|k| k.name).collect()
    }

    /// `[-a ANCHOR] -F Tables` (pfr_clr_tables): every active table of
    /// `anchor`'s namespace stops being active, its entries gone; one a
    /// rule still names stays, inactive (an anchor's lookups go to the
    /// main ruleset's table again), the others go. Returns how many.
    pub fn clear_tables(&self, anchor: &str) -> Result<usize, TableMsg> {
        let _g = self.inner.load_lock.lock();
        let rs = self.inner.ruleset.load_full();
        let extra: Vec<Arc<Table>> = self.inner.extra.lock().values().cloned().collect();
        let mut n = 0;
        for t in rs.tables.values().chain(extra.iter()).filter(|t| t.anchor == anchor && t.is_active()) {
            t.flush();
            t.set_active(false);
            t.set_persist(false);
            n += 1;
        }
        if n > 0 {
            self.recompile().map_err(|e| format!("pfctl: {e}"))?;
        }
        Ok(n)
    }
}
