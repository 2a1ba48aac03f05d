//! pf in the daemon: the resolver that answers the parser from the live
//! stack, the pfctl requests, enabling (installing the filter in the stack's
//! hook) and the pflog writer.

use crate::pfctl::NOTE_MARK;
use crate::proto::{PfFlush, PfInterface, PfShow, PfTableCmd, PfctlOp, Response};
use softnet_core::iface::IfSnapshot;
use softnet_core::stack::Stack;
use softnet_pf::model::{IpNet, OptLevel, Ruleset, TableEntry, TableInit};
use softnet_pf::parse::{FileSource, FsFiles};
use softnet_pf::pflog::PflogQueue;
use softnet_pf::print::optimize;
use softnet_pf::resolver::{IfAddr as PfIfAddr, IfResolver};
use softnet_pf::Pf;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The `egress` group: the interfaces the default route goes out of.
pub fn egress_interfaces(stack: &Stack) -> Vec<String> {
    let ifs = stack.ifaces.load();
    stack
        .routes
        .get(0, Ipv4Addr::UNSPECIFIED, 0)
        .and_then(|r| ifs.get_weak(r.ifp).map(|i| i.name().to_string()))
        .into_iter()
        .collect()
}

/// Answers the pf parser from the running stack: interface names, their
/// addresses, and their groups: those `ifconfig IF group NAME` set, `egress`
/// (the interfaces of the default route) and `all` (every interface).
pub struct StackResolver {
    ifs: Arc<IfSnapshot>,
    egress: Vec<String>,
}

impl StackResolver {
    pub fn new(stack: &Stack) -> StackResolver {
        StackResolver { ifs: stack.ifaces.load_full(), egress: egress_interfaces(stack) }
    }

    /// The names pf knows interfaces by (its pfi_kif table): every
    /// interface, its driver group (`lo` for lo0), the groups it was put
    /// in, `all`, and `egress` while it has members.
    pub fn kif_names(&self) -> Vec<String> {
        let mut names = vec!["all".to_string()];
        for i in self.ifs.iter() {
            names.push(i.name().to_string());
            let driver = i.name().trim_end_matches(|c: char| c.is_ascii_digit());
            if driver != i.name() {
                names.push(driver.to_string());
            }
            names.extend(i.groups());
        }
        if !self.egress.is_empty() {
            names.push("egress".into());
        }
        names.sort();
        names.dedup();
        names
    }

    /// The same facts as the control protocol carries them.
    pub fn describe(&self) -> Vec<PfInterface> {
        self.ifs
            .iter()
            .map(|i| {
                let mut groups = i.groups();
                if self.egress.iter().any(|e| e == i.name()) {
                    groups.push("egress".into());
                }
                let v4 = i.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>();
                let v6 = i.inet6().addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>();
                PfInterface {
                    name: i.name().to_string(),
                    // lo0's IPv6 addresses first, as `addresses` lists them.
                    addrs: if i.is_loopback() { [v6, v4].concat() } else { [v4, v6].concat() },
                    groups,
                }
            })
            .collect()
    }
}

impl IfResolver for StackResolver {
    fn interfaces(&self) -> Vec<String> {
        self.ifs.iter().map(|i| i.name().to_string()).collect()
    }
    fn addresses(&self, ifname: &str) -> Vec<PfIfAddr> {
        self.ifs
            .by_name(ifname)
            .map(|i| {
                let v4 = i.addrs().iter().map(|a| PfIfAddr::new(IpAddr::V4(a.addr), a.prefix_len)).collect::<Vec<_>>();
                let v6 = i.inet6().addrs.iter().map(|a| PfIfAddr::new(IpAddr::V6(a.addr), a.prefix_len)).collect();
                // lo0's IPv6 addresses come first on OpenBSD (in6_ifattach
                // runs before netstart gives it 127.0.0.1).
                if i.is_loopback() {
                    [v6, v4].concat()
                } else {
                    [v4, v6].concat()
                }
            })
            .unwrap_or_default()
    }
    fn is_loopback(&self, ifname: &str) -> bool {
        self.ifs.by_name(ifname).is_some_and(|i| i.is_loopback())
    }
    fn group_members(&self, group: &str) -> Vec<String> {
        match group {
            "egress" => self.egress.clone(),
            "all" => self.interfaces(),
            _ => self
                .ifs
                .iter()
                .filter(|i| i.groups().iter().any(|g| g == group))
                .map(|i| i.name().to_string())
                .collect(),
        }
    }
}

/// pf as the daemon runs it.
pub struct PfService {
    pub pf: Pf,
    stack: Arc<Stack>,
    /// Whether the filter is installed in the stack's hook (pf enabled).
    installed: AtomicBool,
}

impl PfService {
    /// A disabled pf with an empty ruleset.
    pub fn new(stack: Arc<Stack>) -> PfService {
        Self::with_pf(stack, Pf::new())
    }

    /// `new` around an existing `pf` (disabled and looking at `stack` from
    /// now on): the fuzz targets reuse one pf, flushed, between inputs
    /// instead of mapping a state table for each.
    pub fn with_pf(stack: Arc<Stack>, pf: Pf) -> PfService {
        let _ = pf.disable(stack.clock.now());
        let ifs_stack = Arc::downgrade(&stack);
        pf.set_if_lookup(Arc::new(move |name: &str| {
            let s = ifs_stack.upgrade()?;
            let ifs = s.ifaces.load();
            ifs.by_name(name).map(|i| i.addrs().as_ref().clone())
        }));
        let ifs6_stack = Arc::downgrade(&stack);
        pf.set_if_lookup6(Arc::new(move |name: &str| {
            let s = ifs6_stack.upgrade()?;
            let ifs = s.ifaces.load();
            ifs.by_name(name).map(|i| i.inet6().addrs.clone())
        }));
        let ref_stack = Arc::downgrade(&stack);
        pf.set_if_ref_lookup(Arc::new(move |name: &str| {
            let s = ref_stack.upgrade()?;
            let ifs = s.ifaces.load();
            ifs.by_name(name).map(|i| i.weak())
        }));
        let name_stack = Arc::downgrade(&stack);
        pf.set_ifname_lookup(Arc::new(move |idx| {
            let s = name_stack.upgrade()?;
            let ifs = s.ifaces.load();
            ifs.get(idx).map(|i| i.name().to_string())
        }));
        // pf_socket_lookup (`user`, `group`): the owner of the stack's socket.
        let sock_stack = Arc::downgrade(&stack);
        pf.set_socket_lookup(Arc::new(move |tcp, local, remote| {
            let s = sock_stack.upgrade()?;
            s.socks.socket_owner(tcp, local, remote).map(|o| (o.uid, o.gid))
        }));
        let rt_stack = Arc::downgrade(&stack);
        pf.set_route_lookup(Arc::new(move |rtable, addr| {
            let s = rt_stack.upgrade()?;
            let snap = s.routes.snapshot(rtable)?;
            snap.lookup(addr).map(|r| r.ifp)
        }));
        PfService { pf, stack, installed: AtomicBool::new(false) }
    }

    /// `pfctl -e`: pf on, and its hook in the data path.
    pub fn enable(&self) -> Result<&'static str, &'static str> {
        let r = self.pf.enable(self.stack.clock.now());
        if !self.installed.swap(true, Ordering::AcqRel) {
            self.stack.set_filter(Some(Box::new(self.pf.clone())));
        }
        r
    }

    /// `pfctl -d`: the hook leaves the data path (no cost per packet).
    pub fn disable(&self) -> Result<&'static str, &'static str> {
        let r = self.pf.disable(self.stack.clock.now());
        if self.installed.swap(false, Ordering::AcqRel) {
            self.stack.set_filter(None);
        }
        r
    }

    /// Parses, checks and loads a ruleset atomically; on any error nothing
    /// changes and every message is returned (`FILE:LINE: message`).
    /// Included files are read from the file system (the config's `pf`).
    pub fn load_text(&self, filename: &str, text: &str, opt: Option<&str>) -> Result<(), String> {
        let dir = Path::new(filename).parent().map(Path::to_path_buf);
        self.load_into(filename, text, opt, None, &FsFiles { cwd: dir })
    }

    /// `load_text` for the anchor `anchor` (`pfctl -a NAME -f`), or the main
    /// ruleset, with `include` and `load anchor` files from `files`.
    pub fn load_into(
        &self,
        filename: &str,
        text: &str,
        opt: Option<&str>,
        anchor: Option<&str>,
        files: &dyn FileSource,
    ) -> Result<(), String> {
        let resolver = StackResolver::new(&self.stack);
        let path = match anchor {
            Some(a) => {
                softnet_pf::anchor::command_line_anchor(a, true).map(|(p, _)| p).map_err(|e| format!("{e}\n"))?
            }
            None => String::new(),
        };
        let errs = |errs: Vec<softnet_pf::ParseError>| errs.iter().map(|e| format!("{e}\n")).collect::<String>();
        // pfctl_rules ends a failed parse with this line when loading
        // (the only one when yacc's recovery kept the error quiet).
        let parse_errs = |e: Vec<softnet_pf::ParseError>| {
            format!("{}pfctl: Syntax error in config file: pf rules not loaded\n", errs(e))
        };
        let mut rs =
            softnet_pf::parse::parse_ruleset_in(text, filename, &path, &resolver, files).map_err(parse_errs)?;
        softnet_pf::check_supported(&rs).map_err(errs)?;
        load_table_files(&mut rs, files)?;
        let level = match opt {
            Some("none") => Some(OptLevel::None),
            Some("profile") => Some(OptLevel::Profile),
            Some("basic") | None => Some(OptLevel::Basic),
            Some(_) => None,
        };
        if let Some(l) = level {
            optimize(&mut rs, l);
        }
        // As pf's DIOCADDRULE: a rule may only name a routing table that
        // exists (EBUSY otherwise).
        let tables = self.stack.routes.table_ids();
        let bad_rtable = |rs: &Ruleset| {
            softnet_pf::parse::all_rules(rs).any(|r| r.rtable.is_some_and(|t| !tables.iter().any(|&id| id as u32 == t)))
        };
        if bad_rtable(&rs) || rs.load_anchors.iter().any(|la| bad_rtable(&la.ruleset)) {
            return Err("pfctl: DIOCADDRULE: Device busy\n".into());
        }
        if path.is_empty() {
            self.pf.load(&rs, &resolver).map_err(|e| format!("{e}\n"))
        } else {
            self.pf.load_anchor(&rs, &resolver).map_err(|e| format!("{e}\n"))
        }
    }

    /// After `ifconfig IF [-]group NAME`: the running ruleset compiled
    /// again (atomically, states kept) so that `on NAME` covers the group's
    /// members now, as pf follows group changes (the compiled rules hold
    /// a group's members, expanded at load).
    pub fn groups_changed(&self) -> Result<(), String> {
        let cur = self.pf.ruleset();
        if cur.gen == 0 {
            return Ok(());
        }
        self.pf.load(&cur.source, &StackResolver::new(&self.stack)).map_err(|e| format!("{e}\n"))
    }

    /// Loads a ruleset file (the config's `pf`).
    pub fn load_file(&self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.load_text(&path.display().to_string(), &text, None)
    }

    pub fn execute(&self, op: &PfctlOp) -> Response {
        let now = self.stack.clock.now();
        let note = |s: String| Response::Text(format!("{NOTE_MARK}{s}"));
        match op {
            PfctlOp::Load { filename, text, opt_level, anchor, files } => {
                let files = SentFiles(files);
                match self.load_into(filename, text, opt_level.as_deref(), anchor.as_deref(), &files) {
                    // pfctl's main warns after a load that went in.
                    Ok(()) => match self.pf.namespace_collisions(None) {
                        Some(w) => note(format!("{w}\n")),
                        None => Response::Text(String::new()),
                    },
                    Err(e) => Response::Error(e),
                }
            }
            PfctlOp::FlushAnchor { anchor } => {
                let path = match softnet_pf::anchor::command_line_anchor(anchor, true) {
                    Ok((p, _)) => p,
                    Err(e) => return Response::Error(e),
                };
                match self.pf.flush_anchor(&path) {
                    Ok(n) => note(format!("rules cleared ({n})\n")),
                    Err(e) => Response::Error(format!("{e}\n")),
                }
            }
            PfctlOp::FlushTables { anchor } => {
                let path = match anchor_path(anchor.as_deref()) {
                    Ok(p) => p,
                    Err(e) => return Response::Error(e),
                };
                match self.pf.clear_tables(&path) {
                    Ok(n) => note(format!("{n} tables deleted.\n")),
                    Err(e) => Response::Error(format!("{e}\n")),
                }
            }
            PfctlOp::Enable => match self.enable() {
                Ok(m) => note(format!("{m}\n")),
                Err(m) => Response::Error(m.to_string()),
            },
            PfctlOp::Disable => match self.disable() {
                Ok(m) => note(format!("{m}\n")),
                Err(m) => Response::Error(m.to_string()),
            },
            PfctlOp::Flush(PfFlush::Rules) => {
                let n = self.pf.flush_rules();
                note(format!("rules cleared ({n})\n"))
            }
            PfctlOp::Flush(PfFlush::Sources) => {
                self.pf.flush_src_nodes();
                note("source tracking entries cleared\n".to_string())
            }
            PfctlOp::Flush(PfFlush::States) => {
                let n = self.pf.flush_states();
                note(format!("{n} states cleared\n"))
            }
            PfctlOp::Flush(PfFlush::Tables) => match self.pf.clear_tables("") {
                Ok(n) => note(format!("{n} tables deleted.\n")),
                Err(e) => Response::Error(format!("{e}\n")),
            },
            PfctlOp::Flush(PfFlush::All) => {
                let (r, s) = self.pf.flush_all();
                note(format!("rules cleared ({r})\n{s} states cleared\nsource tracking entries cleared\n"))
            }
            PfctlOp::Kill { src, dst } => {
                let n = self.pf.kill_states_ip(*src, *dst);
                note(format!("killed {n} states from 1 sources and {} destinations\n", dst.map_or(0, |_| 1)))
            }
            PfctlOp::KillSrcNodes { src, dst } => {
                let n = self.pf.kill_src_nodes(*src, *dst);
                note(format!("killed {n} src nodes from 1 sources and {} destinations\n", dst.map_or(0, |_| 1)))
            }
            PfctlOp::Show { what: PfShow::Tables, anchor: Some(a), .. } => match anchor_path(Some(a)) {
                Ok(p) => Response::Text(self.pf.show_tables(&p)),
                Err(e) => Response::Error(e),
            },
            PfctlOp::Show { what, verbose, anchor: Some(a) } if matches!(what, PfShow::Rules | PfShow::Anchors) => {
                let shown = softnet_pf::anchor::command_line_anchor(a, false).and_then(|(p, recurse)| match what {
                    PfShow::Anchors => self.pf.show_anchors(&p, *verbose),
                    _ => self.pf.show_anchor_rules(&p, recurse, a.ends_with("/*"), *verbose),
                });
                match shown {
                    Ok(t) => Response::Text(t),
                    Err(e) => Response::Error(e),
                }
            }
            PfctlOp::Show { what, verbose, .. } => Response::Text(match what {
                PfShow::Anchors => self.pf.show_anchors("", *verbose).unwrap_or_default(),
                PfShow::Rules => self.pf.show_rules(*verbose),
                PfShow::States => self.pf.show_states(*verbose, now),
                PfShow::SrcNodes => self.pf.show_src_nodes(*verbose, now),
                PfShow::Info => self.pf.show_info(*verbose, now),
                PfShow::Labels => self.pf.show_labels(),
                PfShow::Timeouts => self.pf.show_timeouts(),
                PfShow::Memory => self.pf.show_memory(),
                PfShow::Tables => self.pf.show_tables(""),
                PfShow::Interfaces => {
                    self.pf.show_interfaces(&StackResolver::new(&self.stack).kif_names(), *verbose > 0)
                }
                PfShow::All => self.pf.show_all(*verbose, now),
            }),
            PfctlOp::Table { name, cmd, addrs, verbose, anchor } => match anchor_path(anchor.as_deref()) {
                Ok(p) => self.table(&softnet_pf::table::TableKey::new(&p, name), *cmd, addrs, *verbose),
                Err(e) => Response::Error(e),
            },
            PfctlOp::Interfaces => match serde_json::to_string(&StackResolver::new(&self.stack).describe()) {
                Ok(j) => Response::Text(j),
                Err(e) => Response::Error(e.to_string()),
            },
        }
    }

    fn table(&self, key: &softnet_pf::table::TableKey, cmd: PfTableCmd, addrs: &[String], verbose: u8) -> Response {
        let name = key.clone();
        let entries = match parse_entries(addrs) {
            Ok(e) => e,
            Err(e) => return Response::Error(e),
        };
        let note = |s: String| Response::Text(format!("{NOTE_MARK}{s}\n"));
        match cmd {
            PfTableCmd::Add => match self.pf.table_add(name, &entries) {
                Ok(m) => note(m),
                Err(m) => Response::Error(m),
            },
            PfTableCmd::Delete => match self.pf.table_delete(name, &entries) {
                Ok(m) => note(m),
                Err(m) => Response::Error(m),
            },
            PfTableCmd::Replace => match self.pf.table_replace(name, &entries) {
                Ok(m) => note(m),
                Err(m) => Response::Error(m),
            },
            PfTableCmd::Flush => match self.pf.table_flush(name) {
                Ok(m) => note(m),
                Err(m) => Response::Error(m),
            },
            PfTableCmd::Show => match self.pf.table_show(name, verbose > 0) {
                Ok(t) => Response::Text(t),
                Err(m) => Response::Error(m),
            },
            PfTableCmd::Test => {
                let ips: Vec<IpAddr> = entries.iter().map(|e| e.net.addr).collect();
                match self.pf.table_test(name, &ips) {
                    Ok((m, _)) => note(m),
                    Err(m) => Response::Error(m),
                }
            }
        }
    }
}

/// The anchor path `-a NAME` names for a table command ("" without
/// `-a`; a trailing `/*` dropped, as pfctl's main does).
fn anchor_path(anchor: Option<&str>) -> Result<String, String> {
    match anchor {
        Some(a) => softnet_pf::anchor::command_line_anchor(a, false).map(|(p, _)| p),
        None => Ok(String::new()),
    }
}

/// The `include` and `load anchor` files a `softnet pfctl -f` read and
/// sent with the ruleset.
struct SentFiles<'a>(&'a [(String, Result<String, String>)]);

impl FileSource for SentFiles<'_> {
    fn read(&self, path: &str) -> Result<String, String> {
        match self.0.iter().find(|(p, _)| p == path) {
            Some((_, r)) => r.clone(),
            None => Err("No such file or directory".into()),
        }
    }
}

/// `table <t> file "PATH"`: the parser leaves the file to its caller (as
/// pfctl reads it): addresses separated by blanks or lines, `#` comments,
/// read from `files` (what the client sent, for a `pfctl -f`). A file that
/// cannot be read or parsed fails the load (nothing changes).
pub(crate) fn load_table_files(rs: &mut Ruleset, files: &dyn FileSource) -> Result<(), String> {
    let filename = rs.filename.clone();
    for td in &mut rs.tables {
        for init in &mut td.init {
            if let TableInit::File(path) = init {
                let at = format!("{filename}:{}", td.line);
                let text = files.read(path).map_err(|e| format!("{at}: cannot load \"{path}\": {e}\n"))?;
                let words: Vec<String> = text
                    .lines()
                    .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace().map(String::from))
                    .collect();
                let entries = parse_entries(&words).map_err(|e| format!("{at}: \"{path}\": {e}\n"))?;
                *init = TableInit::Entries(entries);
            }
        }
    }
    // The tables of the `load anchor` files (each in its anchor) too.
    for la in &mut rs.load_anchors {
        load_table_files(&mut la.ruleset, files)?;
    }
    Ok(())
}

/// `ADDR[/LEN]` or `!ADDR[/LEN]` as pfctl -T takes them.
fn parse_entries(addrs: &[String]) -> Result<Vec<TableEntry>, String> {
    addrs
        .iter()
        .map(|s| {
            let (negated, rest) = match s.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, s.as_str()),
            };
            let (a, len) = match rest.split_once('/') {
                Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| format!("pfctl: {s}: bad prefix length"))?)),
                None => (rest, None),
            };
            let ip: IpAddr = a.parse().map_err(|_| format!("pfctl: {s}: not an IP address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = len.unwrap_or(max);
            if len > max {
                return Err(format!("pfctl: {s}: bad prefix length"));
            }
            Ok(TableEntry { negated, net: IpNet::new(ip, len) })
        })
        .collect()
}

/// Drains pflog records into a pcap file every 100 ms until `stop`.
pub fn spawn_pflog_writer(
    queue: Arc<PflogQueue>,
    path: PathBuf,
    stack: Arc<Stack>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut file = softnet_pf::pflog::open_pcap(&path)?;
    // Clock nanoseconds → Unix nanoseconds.
    let wall =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
    let offset = wall - stack.clock.now().as_nanos() as i128;
    std::thread::Builder::new().name("softnet-pflog".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if let Err(e) = queue.drain_to(&mut file, offset) {
                tracing::warn!("pflog {}: {e}", path.display());
            }
        }
        let _ = queue.drain_to(&mut file, offset);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_files_become_entries() {
        let dir = std::env::temp_dir().join(format!("sn-pftab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.txt");
        std::fs::write(&f, "# blocklist\n10.0.1.2  192.0.2.0/24 # two\n\n!192.0.2.7\n").unwrap();
        let res = softnet_pf::resolver::StaticResolver::new();
        let text = format!("table <bad> persist file \"{}\"\nblock in from <bad>\n", f.display());
        let mut rs = softnet_pf::load_ruleset(&text, "pf.conf", &res).unwrap();
        load_table_files(&mut rs, &FsFiles::default()).unwrap();
        let e: Vec<_> = rs.tables[0].entries().map(|e| (e.negated, e.net.prefix)).collect();
        assert_eq!(e, vec![(false, 32), (false, 24), (true, 32)]);
        std::fs::write(&f, "10.0.1.2 nonsense\n").unwrap();
        let mut rs = softnet_pf::load_ruleset(&text, "pf.conf", &res).unwrap();
        assert!(load_table_files(&mut rs, &FsFiles::default()).unwrap_err().starts_with("pf.conf:1: "));
        // pfctl reads the files while parsing: a missing one is a parse error
        let missing = text.replace("bad.txt", "missing.txt");
        let err = softnet_pf::load_ruleset(&missing, "pf.conf", &res).unwrap_err()[0].to_string();
        assert!(
            err.starts_with("pf.conf:1: cannot load \"") && err.ends_with("missing.txt\": No such file or directory"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `on GROUP` follows `ifconfig IF group NAME`: the compiled rule's
    /// members are the group's members after each change.
    #[test]
    fn rules_on_a_group_follow_group_changes() {
        use softnet_core::stack::StackConfig;
        use softnet_core::vlink;
        use softnet_wire::ethernet::MacAddr;
        let stack = Stack::new(StackConfig { workers: 1, pool_size: 64, ..StackConfig::default() });
        let (r0, _a) = vlink::wire(1, 64);
        let (r1, _b) = vlink::wire(1, 64);
        stack.create_interface("sn-r0", MacAddr([2, 0, 0, 0, 1, 1]), 1500, r0.link_queues()).unwrap();
        stack.create_interface("sn-r1", MacAddr([2, 0, 0, 0, 2, 1]), 1500, r1.link_queues()).unwrap();
        let svc = PfService::new(stack.clone());
        svc.groups_changed().unwrap(); // nothing loaded: nothing to do
        stack.add_group("sn-r1", "lan").unwrap();
        svc.load_text("pf.conf", "block in on lan\npass out on sn-r0\n", None).unwrap();
        let members = |svc: &PfService| svc.pf.ruleset().rules[0].ifm.as_ref().unwrap().members.clone();
        assert_eq!(members(&svc), ["sn-r1"]);
        stack.add_group("sn-r0", "lan").unwrap();
        svc.groups_changed().unwrap();
        assert_eq!(members(&svc), ["sn-r0", "sn-r1"]);
        stack.del_group("sn-r1", "lan").unwrap();
        svc.groups_changed().unwrap();
        assert_eq!(members(&svc), ["sn-r0"]);
        assert_eq!(svc.pf.ruleset().rules.len(), 2);
        // a load with syntax errors (the second one yacc keeps quiet) ends
        // as pfctl's does, and changes nothing
        assert_eq!(
            svc.load_text("pf.conf", "pass in label 88\npass 57\n", None).unwrap_err(),
            "pf.conf:1: syntax error\npfctl: Syntax error in config file: pf rules not loaded\n"
        );
        assert_eq!(svc.pf.ruleset().rules.len(), 2);
    }

    /// The daemon's pf looks routes up in the stack's tables: `no-route`
    /// and `urpf-failed` follow the routes the stack has.
    #[test]
    fn no_route_and_urpf_failed_see_the_stacks_routes() {
        use softnet_core::filter::{BufferSource, Direction, PacketFilter, Verdict};
        use softnet_core::iface::IfAddr;
        use softnet_core::packet::PacketBuf;
        use softnet_core::stack::{RouteTarget, StackConfig};
        use softnet_wire::ipv4::{IpProtocol, Ipv4Repr};
        struct Bufs;
        impl BufferSource for Bufs {
            fn alloc(&mut self) -> Option<PacketBuf> {
                Some(PacketBuf::with_capacity(2048))
            }
            fn alloc_large(&mut self) -> Option<PacketBuf> {
                None
            }
            fn free(&mut self, _p: PacketBuf) {}
        }
        let stack = Stack::new(StackConfig { workers: 1, pool_size: 64, ..StackConfig::default() });
        let (r0, _a) = softnet_core::vlink::wire(1, 64);
        let (r1, _b) = softnet_core::vlink::wire(1, 64);
        stack.create_interface("sn-r0", Default::default(), 1500, r0.link_queues()).unwrap();
        stack.create_interface("sn-r1", Default::default(), 1500, r1.link_queues()).unwrap();
        stack.add_address("sn-r0", IfAddr::new("10.0.1.1".parse().unwrap(), 24)).unwrap();
        stack.add_address("sn-r1", IfAddr::new("10.0.2.1".parse().unwrap(), 24)).unwrap();
        let svc = PfService::new(stack.clone());
        svc.load_text(
            "pf.conf",
            "block in quick from no-route\nblock in quick from urpf-failed\npass no state\n",
            None,
        )
        .unwrap();
        let _ = svc.pf.enable(stack.clock.now());
        let pkt = |src: &str| {
            let i = Ipv4Repr {
                src: src.parse().unwrap(),
                dst: "10.0.2.2".parse().unwrap(),
                protocol: IpProtocol(253),
                ttl: 64,
                tos: 0,
                ident: 1,
                dont_frag: false,
                payload_len: 4,
            };
            let mut b = vec![0u8; i.buffer_len()];
            i.emit(&mut b);
            PacketBuf::from_slice(&b)
        };
        let passes = |ifname: &str, src: &str| {
            let ifs = stack.ifaces.load();
            let ifp = ifs.by_name(ifname).unwrap();
            let v = svc.pf.test(0, stack.clock.now(), Direction::In, ifp, pkt(src), &mut Bufs, &mut vec![]);
            matches!(v, Verdict::Pass(_))
        };
        assert!(passes("sn-r0", "10.0.1.2"));
        assert!(!passes("sn-r1", "10.0.1.2"), "urpf-failed: 10.0.1.0/24 is behind sn-r0");
        assert!(!passes("sn-r1", "192.0.2.1"), "no-route");
        stack.add_route(0, "0.0.0.0".parse().unwrap(), 0, RouteTarget::Gateway("10.0.2.254".parse().unwrap())).unwrap();
        assert!(passes("sn-r1", "192.0.2.1"), "the default route goes out sn-r1");
        assert!(!passes("sn-r0", "192.0.2.1"), "urpf-failed on sn-r0");
    }

    #[test]
    fn rules_may_only_name_routing_tables_that_exist() {
        use softnet_core::stack::{RouteTarget, StackConfig};
        let stack = Stack::new(StackConfig { workers: 1, pool_size: 64, ..StackConfig::default() });
        let svc = PfService::new(stack.clone());
        let rules = "pass in proto udp rtable 3\n";
        assert_eq!(svc.load_text("pf.conf", rules, None).unwrap_err(), "pfctl: DIOCADDRULE: Device busy\n");
        assert_eq!(svc.pf.ruleset().rules.len(), 0, "nothing loaded");
        stack.add_route(3, "192.0.2.0".parse().unwrap(), 24, RouteTarget::Blackhole).unwrap();
        svc.load_text("pf.conf", rules, None).unwrap();
        assert_eq!(svc.pf.ruleset().rules.len(), 1);
    }

    #[test]
    fn table_entries_parse_like_pfctl() {
        let e = parse_entries(&["10.0.0.0/8".into(), "!10.1.2.3".into()]).unwrap();
        assert_eq!(e[0].net.prefix, 8);
        assert!(e[1].negated && e[1].net.prefix == 32);
        assert!(parse_entries(&["10.0.0.0/40".into()]).is_err());
        assert!(parse_entries(&["bogus".into()]).is_err());
    }
}
