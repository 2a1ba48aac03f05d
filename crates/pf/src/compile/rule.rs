//! One rule compiled: addresses, tables, pools, routing options, source
//! tracking, timeouts; the table limits of a load.

use super::*;

pub(super) fn v4net(a: IpAddr, prefix: u8) -> AddrMatch {
    match a {
        IpAddr::V4(a) => {
            let mask = softnet_core::iface::prefix_mask(prefix);
            AddrMatch::Net { net: u32::from(a) & mask, mask }
        }
        IpAddr::V6(a) => {
            let mask = mask6(prefix);
            AddrMatch::Net6 { net: u128::from(a) & mask, mask }
        }
    }
}

pub use crate::addr::mask6;

pub(super) fn endpoint(
    e: &Endpoint,
    path: &str,
    tables: &mut Tables,
    existing: &Tables,
) -> Result<EndpointMatch, CompileError> {
    let addr = match &e.addr {
        Addr::Any => AddrMatch::Any,
        Addr::Net(n) => v4net(n.addr, n.prefix),
        Addr::Range(a, b) => match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => AddrMatch::Range(u32::from(*a), u32::from(*b)),
            (IpAddr::V6(a), IpAddr::V6(b)) => AddrMatch::Range6(u128::from(*a), u128::from(*b)),
            _ => AddrMatch::Never,
        },
        Addr::Table(name) => AddrMatch::Table(attach(tables, existing, path, name)),
        Addr::Dynamic { ifname, modifier, no_alias, prefix } => {
            AddrMatch::Dynamic { ifname: ifname.clone(), modifier: *modifier, no_alias: *no_alias, prefix: *prefix }
        }
        Addr::NoRoute => AddrMatch::NoRoute,
        Addr::UrpfFailed => AddrMatch::UrpfFailed,
        // No route of softnet's carries a label.
        Addr::RouteLabel(_) => AddrMatch::Never,
    };
    Ok(EndpointMatch { addr, negated: e.negated, port: e.port })
}

/// pfr_attach_table: the table a rule of the ruleset at `path` names,
/// from its anchor's namespace. A name the anchor does not have gets a
/// table there that is not active, whose lookups go to its root, the main
/// ruleset's table of the name (made, not active, when the main ruleset
/// has none). A table the main ruleset names without defining it is
/// made active and empty (see `Table`). Tables that exist keep their
/// entries and flags.
pub(super) fn attach(tables: &mut Tables, existing: &Tables, path: &str, name: &str) -> Arc<Table> {
    let key = TableKey::new(path, name);
    if let Some(t) = tables.get(&key) {
        return t.clone();
    }
    let t = match existing.get(&key) {
        Some(t) => t.clone(),
        None => Arc::new(Table::in_anchor(path, name, path.is_empty())),
    };
    if !path.is_empty() {
        t.set_root(Some(root_table(tables, existing, name)));
    }
    tables.insert(key, t.clone());
    t
}

/// The root of an anchor's table `name`: the main ruleset's table of the
/// name, made (not active) when there is none.
pub(super) fn root_table(tables: &mut Tables, existing: &Tables, name: &str) -> Arc<Table> {
    let key = TableKey::main(name);
    if let Some(r) = tables.get(&key) {
        return r.clone();
    }
    let r = existing.get(&key).cloned().unwrap_or_else(|| Arc::new(Table::in_anchor("", name, false)));
    tables.insert(key, r.clone());
    r
}

/// One rule of the ruleset at `path`, numbered `nr` in the tree's flat
/// arrays; `id` is what its states will name it by (its ruleset's
/// generation, its number there).
#[allow(clippy::too_many_arguments)]
pub(super) fn compile_rule(
    r: &Rule,
    path: &str,
    filename: &str,
    nr: usize,
    id: (u32, u32),
    tables: &mut Tables,
    cx: &CompileCx,
) -> Result<CRule, CompileError> {
    let ifm = r.interface.as_ref().map(|i| IfMatch {
        name: i.name.clone(),
        members: cx.resolver.group_members(&i.name),
        negated: i.negated,
    });
    // `received-on`: an interface or group, as `on`
    let rcv = r.received_on.as_ref().map(|i| IfMatch {
        name: i.name.clone(),
        members: cx.resolver.group_members(&i.name),
        negated: i.negated,
    });
    let mut tset = [0u32; TIMEOUT_COUNT];
    for (t, v) in &r.state_opts.timeouts {
        tset[tidx(*t)] = *v;
    }
    let src = endpoint(&r.src, path, tables, cx.existing_tables)?;
    let dst = endpoint(&r.dst, path, tables, cx.existing_tables)?;
    let mut pool = |p: &Option<crate::model::Pool>| {
        p.as_ref()
            .and_then(|p| crate::lb::CPool::new(p, &mut |name| Some(attach(tables, cx.existing_tables, path, name))))
    };
    let (nat, rdr) = (pool(&r.translation.nat), pool(&r.translation.rdr));
    let dst_port_lo = match r.dst.port {
        Some(PortOp::Eq(a) | PortOp::Range(a, _) | PortOp::Inside(a, _) | PortOp::Outside(a, _)) => a,
        _ => 0,
    };
    let route = match (&r.route, r.action) {
        (Some(rt), Action::Pass) => {
            if let Addr::Table(name) = &rt.pool.addr {
                attach(tables, cx.existing_tables, path, name);
            }
            let find = |name: &str| tables.get(&TableKey::new(path, name)).cloned();
            Some(crate::route::CRoute::compile(rt, &find).map_err(|e| CompileError::Unsupported {
                file: filename.to_string(),
                line: r.line,
                what: e.0,
            })?)
        }
        _ => None,
    };
    let o = &r.state_opts;
    // A rule has nodes when it tracks sources, or when its routing,
    // nat-to or rdr-to pool is sticky (pf_map_addr keeps the address in
    // a node of its own).
    let sticky_route = r.route.as_ref().is_some_and(|rt| rt.pool.sticky);
    let sticky_xlate = [&r.translation.nat, &r.translation.rdr].into_iter().flatten().any(|p| p.sticky);
    let tracking = o.source_track.or((sticky_route || sticky_xlate).then_some(crate::model::SourceTrack::Rule));
    let src_track = tracking.map(|track| {
        // The overload table, created as a rule's table is if the
        // ruleset does not define it.
        let overload = o.overload.as_ref().map(|ov| crate::srcnode::Overload {
            table: attach(tables, cx.existing_tables, path, &ov.table),
            flush: ov.flush,
            flush_global: ov.flush_global,
        });
        Arc::new(crate::srcnode::SrcRule {
            gen: id.0,
            nr: id.1,
            track: o.source_track.is_some(),
            global: track == crate::model::SourceTrack::Global,
            max_src_nodes: o.max_src_nodes,
            max_src_states: o.max_src_states,
            max_src_conn: o.max_src_conn,
            max_src_conn_rate: o.max_src_conn_rate,
            overload,
            nodes: Default::default(),
        })
    });
    Ok(CRule {
        nr: nr as u32,
        local_nr: 0,
        node: 0,
        anchor: None,
        rule: r.clone(),
        action: r.action,
        dir: match r.direction {
            Direction::Both => None,
            Direction::In => Some(softnet_core::filter::Direction::In),
            Direction::Out => Some(softnet_core::filter::Direction::Out),
        },
        quick: r.quick,
        log: r.log,
        ifm,
        rcv,
        inet6_only: r.af == Some(AddressFamily::Inet6),
        proto: r.proto,
        src,
        dst,
        flags: r.flags,
        icmp: r.icmp,
        tos: r.tos,
        allow_opts: r.allow_opts,
        scrub: crate::scrub::ScrubActs::of_rule(&r.scrub, r.set.tos, r.set.prio),
        tag: r.tag.as_deref().map(|t| cx.tags.id(t)).unwrap_or(0),
        tagged: r.tagged.as_ref().map(|t| (cx.tags.id(&t.name), t.negated)),
        rtable: r.rtable.map(|t| t as u16),
        keep_state: r.keep_state,
        if_bound: r.state_opts.if_bound,
        sloppy: r.state_opts.sloppy,
        max_states: r.state_opts.max,
        timeout_set: cx.timeout_sets.intern(tset),
        label: r.label.clone(),
        route,
        skip: [0; SKIP_COUNT],
        states_cur: Default::default(),
        expired: Default::default(),
        pktrate: r
            .max_pkt_rate
            .filter(|(n, _)| *n > 0)
            .map(|(n, s)| parking_lot::Mutex::new(crate::srcnode::Threshold::new(n, s, 0))),
        src_track,
        nat,
        rdr,
        dst_port_lo,
    })
}

/// `set limit tables` and `set limit table-entries` over the tables the
/// load would leave: persistent ones kept from the running tree and the
/// ones the load defines (refilled, or kept as they are without an
/// address list). pf's pools refuse the table that goes over.
pub(super) fn check_table_limits(
    opts: &crate::model::Options,
    defs: &[TableDefIn],
    kept: &Tables,
    cx: &CompileCx,
) -> Result<(), CompileError> {
    let max_tables = opts.limit(Limit::Tables) as usize;
    let max_entries = opts.limit(Limit::TableEntries) as usize;
    let defined: std::collections::HashSet<TableKey> =
        defs.iter().map(|d| TableKey::new(&d.def.anchor, &d.def.name)).collect();
    let (mut tables, mut entries) =
        kept.iter().filter(|(k, _)| !defined.contains(*k)).fold((0, 0), |(k, e), (_, t)| (k + 1, e + t.len()));
    for d in defs {
        let td = d.def;
        tables += 1;
        entries += if td.init.is_empty() {
            cx.existing_tables.get(&TableKey::new(&td.anchor, &td.name)).map_or(0, |t| t.len())
        } else {
            crate::table::count_distinct(&td.entries().cloned().collect::<Vec<_>>())
        };
        if tables > max_tables || entries > max_entries {
            return Err(CompileError::TableMemory { file: d.file.to_string(), line: td.line, name: td.name.clone() });
        }
    }
    Ok(())
}

impl AddrMatch {
    /// Whether `a` of family `af` matches (before the rule's negation):
    /// an address of one family never matches the other's networks
    /// (pf_match_addr compares only within `af`). `dyn_addrs` finds an
    /// interface's addresses for `(if)`.
    #[inline]
    pub fn matches(
        &self,
        af: AddressFamily,
        a: crate::addr::PfAddr,
        dyn_addrs: &dyn Fn(&str) -> Option<Vec<softnet_core::iface::IfAddr>>,
    ) -> bool {
        if af == AddressFamily::Inet6 {
            return self.matches6(a.u128());
        }
        let x = a.0[0];
        let a = a.v4();
        match self {
            AddrMatch::Any => true,
            AddrMatch::Net { net, mask } => x & mask == *net,
            AddrMatch::Range(lo, hi) => x >= *lo && x <= *hi,
            AddrMatch::Net6 { .. } | AddrMatch::Range6(..) => false,
            AddrMatch::Table(t) => t.contains(a),
            AddrMatch::Dynamic { ifname, modifier, no_alias, prefix } => {
                let Some(addrs) = dyn_addrs(ifname) else { return false };
                let n = if *no_alias { addrs.len().min(1) } else { addrs.len() };
                // pfi_instance_add: an explicit `/N` widens each address
                // (the network modifier's own mask otherwise).
                let widened = |ia: &softnet_core::iface::IfAddr, p: u8| {
                    softnet_core::iface::IfAddr::new(ia.addr, p.min(32)).contains(a)
                };
                addrs[..n].iter().any(|ia| match (modifier, prefix) {
                    (IfAddrModifier::Address | IfAddrModifier::Network, Some(p)) => widened(ia, *p),
                    (IfAddrModifier::Address, None) => ia.addr == a,
                    (IfAddrModifier::Network, None) => ia.contains(a),
                    (IfAddrModifier::Broadcast, _) => ia.broadcast() == Some(a),
                    (IfAddrModifier::Peer, _) => false,
                })
            }
            // These need the route table: the rule walk asks it
            // (`eval::endpoint_matches`); without it they match nothing.
            AddrMatch::NoRoute | AddrMatch::UrpfFailed | AddrMatch::Never => false,
        }
    }

    /// `matches` for an IPv6 address. `(if)` holds the interface's IPv4
    /// addresses only (interfaces have no IPv6 addresses yet), so it
    /// matches no IPv6 address.
    fn matches6(&self, x: u128) -> bool {
        match self {
            AddrMatch::Any => true,
            AddrMatch::Net6 { net, mask } => x & mask == *net,
            AddrMatch::Range6(lo, hi) => x >= *lo && x <= *hi,
            AddrMatch::Table(t) => t.contains6(std::net::Ipv6Addr::from(x)),
            AddrMatch::Net { .. } | AddrMatch::Range(..) | AddrMatch::Dynamic { .. } => false,
            AddrMatch::NoRoute | AddrMatch::UrpfFailed | AddrMatch::Never => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PfAddr;

    /// pf_match_addr: a network matches addresses of its own family only;
    /// an IPv6 prefix and range compare all 128 bits.
    #[test]
    fn inet6_networks_and_ranges_match_ipv6_addresses_only() {
        let none = |_: &str| None;
        let a6 = |s: &str| PfAddr::from_v6(s.parse().unwrap());
        let a4 = |s: &str| PfAddr::from_v4(s.parse().unwrap());
        let net6 = v4net("2001:db8:1::".parse().unwrap(), 48);
        assert!(net6.matches(AddressFamily::Inet6, a6("2001:db8:1:ffff::9"), &none));
        assert!(!net6.matches(AddressFamily::Inet6, a6("2001:db8:2::9"), &none));
        // The IPv4 address in the same first word is not in it.
        assert!(!net6.matches(AddressFamily::Inet, PfAddr([0x2001_0db8, 0, 0, 0]), &none));
        let host = v4net("2001:db8::1".parse().unwrap(), 128);
        assert!(host.matches(AddressFamily::Inet6, a6("2001:db8::1"), &none));
        assert!(!host.matches(AddressFamily::Inet6, a6("2001:db8::1:0:0:1"), &none));
        let net4 = v4net("10.0.0.0".parse().unwrap(), 8);
        assert!(net4.matches(AddressFamily::Inet, a4("10.1.2.3"), &none));
        assert!(!net4.matches(AddressFamily::Inet6, PfAddr([0x0a01_0203, 0, 0, 0]), &none));
        let r = AddrMatch::Range6(a6("fd00::10").u128(), a6("fd00::20").u128());
        assert!(r.matches(AddressFamily::Inet6, a6("fd00::15"), &none));
        assert!(!r.matches(AddressFamily::Inet6, a6("fd00::21"), &none));
        assert!(AddrMatch::Any.matches(AddressFamily::Inet6, a6("::1"), &none));
        assert!(!AddrMatch::Never.matches(AddressFamily::Inet6, a6("::1"), &none));
    }
}
