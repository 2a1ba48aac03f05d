//! `antispoof`, expansion of lists into rules, pfctl's `rule_consistent`,
//! and label macros.

use super::*;

impl Parser<'_> {
    // ----- antispoof -----

    pub(super) fn antispoof(&mut self, c: &mut Cursor) -> PResult<()> {
        let mut log = None;
        let mut quick = false;
        for _ in 0..2 {
            if log.is_none() && c.eat_word("log") {
                log = Some(Self::log_opts(c)?);
            } else if !quick && c.eat_word("quick") {
                quick = true;
            }
        }
        c.expect_word("for")?;
        let ifs = c.list(|c| {
            let line = c.line();
            if c.eat_punct("(") {
                let n = c.ifname()?;
                c.expect_punct(")")?;
                // The rule it expands to says `from (n:network)`, which
                // parse.y's dynaddr takes only with a letter first: refused
                // here with dynaddr's message rather than loaded unprintable.
                if !n.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    return Err((line, format!("invalid interface name '{n}'")));
                }
                Ok((n, true, line))
            } else {
                Ok((c.ifname()?, false, line))
            }
        })?;
        let af = if c.eat_word("inet") {
            Some(AddressFamily::Inet)
        } else if c.eat_word("inet6") {
            Some(AddressFamily::Inet6)
        } else {
            None
        };
        let mut label = None;
        let mut rtable = None;
        while !c.at_end() {
            let line = c.line();
            if c.eat_word("label") {
                label = Some(c.string()?);
            } else if c.eat_word("rtable") {
                let n = c.number()?;
                if n > 255 {
                    return Err((line, "invalid rtable id".into()));
                }
                rtable = Some(n as u32);
            } else {
                return c.syntax();
            }
        }
        for (name, dynamic, line) in ifs {
            if !dynamic && !self.resolver.exists(&name) {
                return Err((line, format!("unknown interface {name}")));
            }
            let base = || {
                let mut s = RuleSpec::new(Action::Block(BlockAction::Drop));
                s.direction = Direction::In;
                s.log = log;
                s.quick = quick;
                s.af = af;
                s.label = label.clone();
                s.rtable = rtable;
                s
            };
            let hosts = |addrs: Vec<Addr>| addrs.into_iter().map(HostItem::new).collect();
            let mut r1 = base();
            r1.interfaces = vec![Some(InterfaceMatch { name: name.clone(), negated: true })];
            let (nets, own) = if dynamic {
                let d = |modifier| Addr::Dynamic { ifname: name.clone(), modifier, no_alias: false, prefix: None };
                (vec![d(IfAddrModifier::Network)], vec![d(IfAddrModifier::Address)])
            } else {
                let f = |m| self.if_lookup(&name, m, false).into_iter().map(Addr::Net).collect::<Vec<_>>();
                (f(IfAddrModifier::Network), f(IfAddrModifier::Address))
            };
            if !nets.is_empty() {
                r1.src_hosts = hosts(nets);
                self.expand_quiet(r1, c.end_line);
            }
            // pfctl looks the interface's flags up for `(if)` too
            let loopback = self.resolver.interface_exists(&name) && self.resolver.is_loopback(&name);
            if !loopback && !own.is_empty() {
                let mut r2 = base();
                r2.src_hosts = hosts(own);
                self.expand_quiet(r2, c.end_line);
            }
        }
        Ok(())
    }

    /// Expansion for generated rules: combinations of the wrong family are
    /// simply dropped.
    pub(super) fn expand_quiet(&mut self, spec: RuleSpec, line: usize) {
        self.expand_inner(spec, line, false);
    }

    pub(super) fn expand(&mut self, spec: RuleSpec, line: usize) {
        self.expand_inner(spec, line, true);
    }

    // ----- expansion -----

    pub(super) fn expand_inner(&mut self, spec: RuleSpec, line: usize, complain_if_empty: bool) {
        if spec.af_to.is_some() && spec.route.is_some() {
            self.error(line, "af-to cannot be used together with route-to, reply-to, dup-to");
            return;
        }
        if let Some((kind, _)) = &spec.route {
            if *kind != RouteKind::DupTo && spec.direction == Direction::Both {
                self.error(line, "direction must be explicit with rules that specify routing");
                return;
            }
        }
        let mut added = 0;
        let keep_state =
            spec.keep_state.unwrap_or(if spec.action == Action::Pass { StateMode::Keep } else { StateMode::NoState });
        let mut state_opts = spec.state_opts.clone();
        let statelock = spec.statelock;
        if keep_state != StateMode::NoState {
            let policy_if_bound = self.rs.options.state_policy == StatePolicy::IfBound;
            state_opts.if_bound = statelock.unwrap_or(policy_if_bound);
        }
        // pfctl: 'flags S/SA' by default on stateful pass rules
        let default_flags = if spec.flags.is_none()
            && spec.action == Action::Pass
            && keep_state != StateMode::NoState
            && !spec.fragment
        {
            TcpFlags { set: 0x02, mask: 0x12 }
        } else {
            spec.flags.unwrap_or_default()
        };
        // pfctl's decide_address_family: a rule without `inet`/`inet6`
        // takes the family all its sources (else destinations) share.
        let decided = spec.af.or_else(|| decide_af(&spec.src_hosts)).or_else(|| decide_af(&spec.dst_hosts));
        // No `user`/`group` is one combination without the match.
        let users: Vec<Option<IdOp>> =
            if spec.users.is_empty() { vec![None] } else { spec.users.iter().copied().map(Some).collect() };
        let groups: Vec<Option<IdOp>> =
            if spec.groups.is_empty() { vec![None] } else { spec.groups.iter().copied().map(Some).collect() };
        // parse.y's expand_rule loops: interface, proto, icmp-type, source,
        // destination, source port, destination port, user, group.
        let mut combos = vec![];
        for src in &spec.src_hosts {
            for dst in &spec.dst_hosts {
                for sport in &spec.src_ports {
                    for dport in &spec.dst_ports {
                        for user in &users {
                            for group in &groups {
                                combos.push((src, dst, sport, dport, *user, *group));
                            }
                        }
                    }
                }
            }
        }
        for ifm in &spec.interfaces {
            for proto in &spec.protos {
                for icmp in &spec.icmp {
                    for &(src, dst, sport, dport, user, group) in &combos {
                        // a scoped address (fe80::1%em0) is on its
                        // interface: the rule's, or the rule gets it
                        let scopes: Vec<&String> = [src, dst].iter().filter_map(|h| h.scope.as_ref()).collect();
                        if scopes.windows(2).any(|w| w[0] != w[1])
                            || ifm.as_ref().is_some_and(|i| scopes.iter().any(|s| **s != i.name))
                        {
                            continue;
                        }
                        let scoped_if = match (ifm, scopes.first()) {
                            (None, Some(s)) => Some(InterfaceMatch { name: (*s).clone(), negated: false }),
                            _ => ifm.clone(),
                        };
                        let ifm = &scoped_if;
                        // collapse_redirspec comes first: it may
                        // give the rule its family, and what it
                        // reports stands even when this
                        // combination is then left out.
                        let mut af = decided;
                        let mut problems = vec![];
                        let naf = spec.af_to;
                        let rdr = spec
                            .rdr
                            .as_ref()
                            .map(|rs| self.collapse_pool(rs, false, naf, &mut af, &mut problems, line));
                        let nat = spec
                            .nat
                            .as_ref()
                            .map(|rs| self.collapse_pool(rs, false, naf, &mut af, &mut problems, line));
                        let route = spec
                            .route
                            .as_ref()
                            .map(|(_, rs)| self.collapse_pool(rs, true, None, &mut af, &mut problems, line));
                        let (sa, da) = (src.addr.family(), dst.addr.family());
                        let mixed = matches!((sa, da), (Some(a), Some(b)) if a != b)
                            || af.is_some_and(|af| sa.is_some_and(|a| a != af) || da.is_some_and(|a| a != af));
                        if mixed {
                            for p in problems {
                                self.error(line, p);
                            }
                            continue;
                        }
                        let af = af.or(sa).or(da);
                        let is_tcp = proto.is_none() || *proto == Some(IPPROTO_TCP);
                        let mut ks = keep_state;
                        if matches!(ks, StateMode::Modulate | StateMode::Synproxy) && !is_tcp {
                            ks = StateMode::Keep;
                        }
                        let mut r = Rule {
                            action: spec.action,
                            direction: spec.direction,
                            log: spec.log,
                            quick: spec.quick,
                            interface: ifm.clone(),
                            af,
                            proto: *proto,
                            src: Endpoint { addr: src.addr.clone(), negated: src.negated, port: *sport },
                            dst: Endpoint { addr: dst.addr.clone(), negated: dst.negated, port: *dport },
                            flags: if is_tcp { default_flags } else { TcpFlags::default() },
                            icmp: icmp.map(|(_, m)| m),
                            tos: spec.tos,
                            allow_opts: spec.allow_opts,
                            label: None,
                            tag: None,
                            tagged: None,
                            rtable: spec.rtable,
                            keep_state: ks,
                            state_opts: state_opts.clone(),
                            translation: Translation { af_to: spec.af_to, ..Translation::default() },
                            route: None,
                            anchor: spec.anchor.clone(),
                            received_on: spec.received_on.clone(),
                            user,
                            group,
                            prio: spec.prio,
                            max_pkt_rate: spec.max_pkt_rate,
                            set: spec.set.clone(),
                            probability: spec.probability,
                            fragment: spec.fragment,
                            scrub: spec.scrub,
                            once: spec.once,
                            divert: spec.divert,
                            line,
                        };
                        // gen_dynnode: an inet rule's `(if)/N` is at most /32
                        for e in [&mut r.src, &mut r.dst] {
                            if let Addr::Dynamic { prefix: p @ Some(_), .. } = &mut e.addr {
                                let full = if af == Some(AddressFamily::Inet) { 32 } else { 128 };
                                if p.is_some_and(|n| n >= full) {
                                    *p = None;
                                }
                            }
                        }
                        // check_netmask: noted before the rule's other problems
                        let mut bad_mask = false;
                        for h in [src, dst] {
                            if let Some(m) = h.bad_mask {
                                self.note(format!("netmask {m} invalid for IPv4 address"));
                                bad_mask = true;
                            }
                        }
                        if let Some((p, _)) = icmp {
                            if r.proto != Some(*p) {
                                problems.push("icmp-type mismatch".to_string());
                            }
                        }
                        let binat = spec.nat.as_ref().is_some_and(|n| n.binat);
                        if binat {
                            let nat_addr = nat.clone().flatten().map_or(Addr::Any, |c| c.addr);
                            problems.extend(pool::binat_errors(&r.src, &nat_addr, decided, spec.direction));
                            // the outbound half first
                            r.direction = Direction::Out;
                        }
                        if let (Some(Some(c)), Some(rs)) = (nat, &spec.nat) {
                            r.translation.nat = pool::apply(c, rs, PoolRole::Nat, *dport, &mut problems);
                        }
                        if let (Some(Some(c)), Some(rs)) = (rdr, &spec.rdr) {
                            r.translation.rdr = pool::apply(c, rs, PoolRole::Rdr, *dport, &mut problems);
                        }
                        if let (Some(Some(c)), Some((kind, rs))) = (route, &spec.route) {
                            r.route = pool::apply(c, rs, PoolRole::Route, *dport, &mut problems)
                                .map(|pool| Route { kind: *kind, pool });
                        }
                        // labels and tags expand the same macros
                        let nr = self.dest().len();
                        if let Some(l) = &spec.label {
                            let l = expand_label(l, &r, nr);
                            if l.len() >= 64 {
                                problems.push("rule label too long (max 63 chars)".into());
                            }
                            // an empty label is no label
                            r.label = (!l.is_empty()).then_some(l);
                        }
                        r.tag = spec.tag.as_ref().map(|t| expand_label(t, &r, nr));
                        r.tagged = spec
                            .tagged
                            .as_ref()
                            .map(|t| TagMatch { name: expand_label(&t.name, &r, nr), negated: t.negated });
                        problems.extend(rule_consistent(&r, spec.route.is_some()));
                        if !problems.is_empty() || bad_mask {
                            for p in problems {
                                self.error(line, p);
                            }
                            self.error(line, "skipping rule due to errors");
                            continue;
                        }
                        let inbound = if binat { Some(self.binat_rdr_rule(&r, &spec, src, line)) } else { None };
                        self.dest().push(r);
                        added += 1;
                        if let Some(Some(rb)) = inbound {
                            self.dest().push(rb);
                        }
                    }
                }
            }
        }
        if added == 0 && complain_if_empty {
            self.error(line, "rule expands to no valid combination");
        }
    }

    /// A pool's addresses for one expansion (`pool::collapse`), lists made
    /// into tables here.
    fn collapse_pool(
        &mut self,
        rs: &pool::RedirSpec,
        routing: bool,
        naf: Option<AddressFamily>,
        af: &mut Option<AddressFamily>,
        problems: &mut Vec<String>,
        line: usize,
    ) -> Option<pool::Collapsed> {
        pool::collapse(rs, routing, naf, af, problems, &mut |nets| self.automatic_table(nets, line))
    }

    /// pfctl's `add_opt_table` for a pool list: a constant table
    /// `<__automatic_N>`, printed with the tables (`-nv`).
    fn automatic_table(&mut self, nets: Vec<IpNet>, line: usize) -> String {
        let name = format!("__automatic_{}", self.auto_tables);
        self.auto_tables += 1;
        let entries = nets.into_iter().map(|net| TableEntry { negated: false, net }).collect();
        self.rs.header.push(HeaderItem::Table(self.rs.tables.len()));
        let anchor = self.cur_path();
        self.rs.tables.push(TableDef {
            name: name.clone(),
            anchor,
            persist: false,
            constant: true,
            counters: false,
            init: vec![TableInit::Entries(entries)],
            line,
        });
        name
    }

    /// binat-to's inbound half (pfctl's `expand_rule` makes it after the
    /// outbound `nat-to … static-port` rule `r`): from the outbound rule's
    /// destination to its nat address, redirected to its source. `None`
    /// when it is inconsistent (its errors are reported).
    fn binat_rdr_rule(&mut self, r: &Rule, spec: &RuleSpec, src: &HostItem, line: usize) -> Option<Rule> {
        let nat = r.translation.nat.as_ref()?;
        let nat_spec = spec.nat.as_ref()?;
        let mut rb = r.clone();
        rb.direction = Direction::In;
        rb.src = Endpoint { addr: r.dst.addr.clone(), negated: r.dst.negated, port: r.dst.port };
        rb.dst = Endpoint { addr: nat.addr.clone(), negated: false, port: r.src.port };
        let rs = pool::RedirSpec {
            hosts: vec![pool::RedirHost { addr: src.addr.clone(), ifname: None }],
            port: nat_spec.port,
            opts: pool::PoolOpts { static_port: false, ..nat_spec.opts },
            binat: false,
        };
        let mut problems = vec![];
        let mut af = rb.af;
        let c = self.collapse_pool(&rs, false, None, &mut af, &mut problems, line);
        rb.translation = Translation::default();
        rb.translation.rdr = c.and_then(|c| pool::apply(c, &rs, PoolRole::Rdr, rb.dst.port, &mut problems));
        problems.extend(rule_consistent(&rb, rb.route.is_some()));
        if problems.is_empty() {
            return Some(rb);
        }
        for p in problems {
            self.error(line, p);
        }
        self.error(line, "skipping rule due to errors");
        None
    }
}

/// pfctl's `decide_address_family` over one side's list: the family every
/// item has, if they share one.
pub(super) fn decide_af(hosts: &[HostItem]) -> Option<AddressFamily> {
    let first = hosts.first()?.addr.family()?;
    hosts.iter().all(|h| h.addr.family() == Some(first)).then_some(first)
}

/// pfctl's `rule_consistent`. `routed`: the rule says route-to, reply-to
/// or dup-to (even when its pool was refused).
pub(super) fn rule_consistent(r: &Rule, routed: bool) -> Vec<String> {
    let mut p = vec![];
    let proto = r.proto.unwrap_or(0);
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && (r.src.port.is_some() || r.dst.port.is_some()) {
        p.push("port only applies to tcp/udp".into());
    }
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && r.user.is_some() {
        p.push("user only applies to tcp/udp".into());
    }
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && r.group.is_some() {
        p.push("group only applies to tcp/udp".into());
    }
    if proto != IPPROTO_ICMP && proto != IPPROTO_ICMPV6 && r.icmp.is_some() {
        p.push("icmp-type/code only applies to icmp".into());
    }
    if r.af.is_none() && r.icmp.is_some() {
        p.push("must indicate address family with icmp-type/code".into());
    }
    if let (Some(af @ AddressFamily::Inet6), IPPROTO_ICMP) | (Some(af @ AddressFamily::Inet), IPPROTO_ICMPV6) =
        (r.af, proto)
    {
        p.push(format!(
            "proto {} doesn't match address family {}",
            if proto == IPPROTO_ICMP { "icmp" } else { "icmp6" },
            af.keyword()
        ));
    }
    if r.allow_opts && r.action != Action::Pass {
        p.push("allow-opts can only be specified for pass rules".into());
    }
    if r.fragment && (r.src.port.is_some() || r.dst.port.is_some() || r.flags.mask != 0 || r.icmp.is_some()) {
        p.push("fragments can be filtered only on IP header fields".into());
    }
    if matches!(r.action, Action::Block(BlockAction::ReturnRst { .. })) && proto != IPPROTO_TCP {
        p.push("return-rst can only be applied to TCP rules".into());
    }
    if r.action != Action::Pass && r.keep_state != StateMode::NoState {
        p.push("keep state is great, but only for pass rules".into());
    }
    if routed && r.keep_state == StateMode::NoState {
        p.push("route-to, reply-to and dup-to require keep state".into());
    }
    if matches!(r.keep_state, StateMode::Synproxy | StateMode::Modulate) && r.state_opts.sloppy {
        p.push("sloppy state matching cannot be used with synproxy state or modulate state".into());
    }
    let translates = r.translation.nat.is_some() || r.translation.rdr.is_some();
    if translates && r.action != Action::Match && r.keep_state == StateMode::NoState {
        p.push("nat-to and rdr-to require keep state".into());
    }
    if translates && r.direction == Direction::Both {
        p.push("nat-to and rdr-to require a direction".into());
    }
    if r.af == Some(AddressFamily::Inet6) && (r.scrub.no_df || r.scrub.random_id) {
        p.push("address family inet6 does not support scrub options no-df, random-id".into());
    }
    match r.action {
        Action::Match => {
            if r.divert.is_some() {
                p.push("divert is not supported on match rules".into());
            }
            if routed {
                p.push("route-to, reply-to and dup-to are not supported on match rules".into());
            }
            if r.translation.af_to.is_some() {
                p.push("af-to is not supported on match rules".into());
            }
        }
        Action::Block(_) if routed => {
            p.push("route-to, reply-to and dup-to are not supported on block rules".into());
        }
        _ => {}
    }
    p
}

pub(super) fn label_addr(e: &Endpoint) -> String {
    let a = match &e.addr {
        Addr::Any => "any".to_string(),
        a => crate::print::format_addr(a, 0),
    };
    if e.negated {
        format!("! {a}")
    } else {
        a
    }
}

pub(super) fn label_port(p: &Option<PortOp>) -> String {
    match p {
        None => String::new(),
        Some(PortOp::Eq(a)) => a.to_string(),
        Some(PortOp::Ne(a)) => format!("!={a}"),
        Some(PortOp::Lt(a)) => format!("<{a}"),
        Some(PortOp::Le(a)) => format!("<={a}"),
        Some(PortOp::Gt(a)) => format!(">{a}"),
        Some(PortOp::Ge(a)) => format!(">={a}"),
        // expand_label_port has no case for PF_OP_RRG
        Some(PortOp::Range(..)) => String::new(),
        Some(PortOp::Inside(a, b)) => format!("{a}><{b}"),
        Some(PortOp::Outside(a, b)) => format!("{a}<>{b}"),
    }
}

/// Label macros, expanded per rule: `$if $srcaddr $dstaddr $srcport
/// $dstport $proto $nr`.
pub(super) fn expand_label(l: &str, r: &Rule, nr: usize) -> String {
    let proto = match r.proto {
        // getprotobynumber(0)
        None => "ip".to_string(),
        Some(p) => names::proto_name(p).map(str::to_string).unwrap_or_else(|| p.to_string()),
    };
    let iface = r.interface.as_ref().map(|i| i.name.clone()).unwrap_or_else(|| "any".into());
    // longest names first so $srcaddr is not read as $src…
    let subs = [
        ("$srcaddr", label_addr(&r.src)),
        ("$dstaddr", label_addr(&r.dst)),
        ("$srcport", label_port(&r.src.port)),
        ("$dstport", label_port(&r.dst.port)),
        ("$proto", proto),
        ("$if", iface),
        ("$nr", nr.to_string()),
    ];
    // Again over its own output until nothing changes (a bounded number
    // of times): a substitution can join text into a macro's name
    // (`$sr$dstportcaddr`), which pfctl leaves in the label and which
    // the printed rule's next load would expand (no longer the same
    // rule). The values hold no '$' but for odd interface names.
    let mut cur = label_pass(l, &subs);
    for _ in 0..16 {
        let next = label_pass(&cur, &subs);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// One left-to-right pass of `expand_label`'s substitutions.
fn label_pass(l: &str, subs: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut rest = l;
    'outer: while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        for (k, v) in subs {
            if rest.starts_with(k) {
                out.push_str(v);
                rest = &rest[k.len()..];
                continue 'outer;
            }
        }
        out.push('$');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}
