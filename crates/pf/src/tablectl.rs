//! The table commands of pfctl (`-t TABLE -T add|delete|replace|flush|
//! test|show`, `-sT`) as pf_ioctl.c's DIOCR* handlers and pf_table.c's
//! pfr_add_addrs, pfr_del_addrs, pfr_set_addrs, pfr_clr_addrs,
//! pfr_tst_addrs, pfr_get_addrs and pfr_get_tables run them.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::filter::Pf;
use crate::model::Limit;
use crate::table::Table;

/// Text a table command prints (pfctl writes these to stderr).
pub type TableMsg = String;

/// pfctl's report of ENOMEM from a table ioctl (a pool limit reached).
const NO_MEMORY: &str = "pfctl: Cannot allocate memory";

impl Pf {
    /// A table by name: the ruleset's.
    pub fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.inner.ruleset.load().tables.get(name).cloned()
    }

    /// `-T add` on a table the ruleset does not have creates it (kept
    /// aside, and handed to the next ruleset that names it), unless that
    /// would go over `set limit tables`.
    fn table_or_create(&self, name: &str) -> Result<Arc<Table>, TableMsg> {
        if let Some(t) = self.table(name) {
            return Ok(t);
        }
        let (count, _) = self.table_usage();
        let mut g = self.inner.extra.lock();
        if let Some(t) = g.get(name) {
            return Ok(t.clone());
        }
        if count >= self.inner.ruleset.load().opts.limit(Limit::Tables) as usize {
            return Err(NO_MEMORY.to_string());
        }
        Ok(g.entry(name.to_string()).or_insert_with(|| Arc::new(Table::new(name))).clone())
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
    pub fn table_add(&self, name: &str, entries: &[crate::model::TableEntry]) -> Result<TableMsg, TableMsg> {
        let _g = self.inner.load_lock.lock();
        let t = self.table_or_create(name)?;
        let n = t.add_within(entries, self.table_room()).ok_or_else(|| NO_MEMORY.to_string())?;
        Ok(format!("{}/{} addresses added.", n, entries.len()))
    }

    pub fn table_delete(&self, name: &str, entries: &[crate::model::TableEntry]) -> Result<TableMsg, TableMsg> {
        let t = self.find_table(name)?;
        let n = t.delete(entries);
        Ok(format!("{}/{} addresses deleted.", n, entries.len()))
    }

    pub fn table_replace(&self, name: &str, entries: &[crate::model::TableEntry]) -> Result<TableMsg, TableMsg> {
        let _g = self.inner.load_lock.lock();
        let t = self.table_or_create(name)?;
        let (a, d) = t.replace_within(entries, self.table_room()).ok_or_else(|| NO_MEMORY.to_string())?;
        let mut s = String::new();
        if a > 0 {
            s.push_str(&format!("{a} addresses added.\n"));
        }
        if d > 0 {
            s.push_str(&format!("{d} addresses deleted.\n"));
        }
        if s.is_empty() {
            s.push_str("no changes.\n");
        }
        Ok(s.trim_end().to_string())
    }

    pub fn table_flush(&self, name: &str) -> Result<TableMsg, TableMsg> {
        let t = self.find_table(name)?;
        Ok(format!("{} addresses deleted.", t.flush()))
    }

    /// `-T test`: (message, all matched).
    pub fn table_test(&self, name: &str, addrs: &[Ipv4Addr]) -> Result<(TableMsg, bool), TableMsg> {
        let t = self.find_table(name)?;
        let n = t.test(addrs);
        Ok((format!("{}/{} addresses match.", n, addrs.len()), n == addrs.len()))
    }

    pub fn table_show(&self, name: &str, verbose: bool) -> Result<String, TableMsg> {
        Ok(self.find_table(name)?.show_text(verbose))
    }

    fn find_table(&self, name: &str) -> Result<Arc<Table>, TableMsg> {
        self.table(name)
            .or_else(|| self.inner.extra.lock().get(name).cloned())
            .ok_or_else(|| "pfctl: Table does not exist.".to_string())
    }

    /// All table names (`-sT`).
    pub fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.ruleset.load().tables.keys().cloned().collect();
        v.extend(self.inner.extra.lock().keys().cloned());
        v.sort();
        v.dedup();
        v
    }
}
