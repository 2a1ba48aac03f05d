//! `queue` definitions (parse.y's `queuespec`, `queue_opts`, `scspec`,
//! `bandwidth`, `expand_queue`) and the checks pfctl makes on the queue
//! tree before loading it. softnet has no queueing yet: queues parse and
//! print, and `check_supported` refuses them at load.

use super::*;

/// PF_QNAME_SIZE
const QNAME_SIZE: usize = 64;

impl Parser<'_> {
    /// parse.y's `bandwidth`: a number with an optional unit (`b`, `K`,
    /// `M`, `G`, each optionally followed by `b`, `bit`, `B` or `Bit`), or
    /// a percentage.
    fn bandwidth(c: &mut Cursor) -> PResult<Bandwidth> {
        let line = c.line();
        let is_number = c.peek().is_some_and(|t| t.is_number());
        let w = c.string()?;
        if is_number {
            let n: u64 = w.parse().map_err(|_| (line, "bandwidth number too big".to_string()))?;
            return Ok(Bandwidth { absolute: n, percent: 0 });
        }
        let split = w.find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).unwrap_or(w.len());
        let (num, unit) = w.split_at(split);
        let bps: f64 = num.parse().unwrap_or(0.0);
        // "1Mb": a unit letter and a bit/byte suffix, which pfctl drops
        let unit = match unit.get(1..) {
            Some("Bit" | "B" | "bit" | "b") => &unit[..1],
            _ => unit,
        };
        let bps = match unit {
            "" | "b" => bps,
            "K" => bps * 1e3,
            "M" => bps * 1e6,
            "G" => bps * 1e9,
            "%" => {
                if !(0.0..=100.0).contains(&bps) {
                    return Err((line, "bandwidth spec out of range".into()));
                }
                return Ok(Bandwidth { absolute: 0, percent: bps as u8 });
            }
            _ => return Err((line, format!("unknown unit \"{unit}\""))),
        };
        if !(0.0..=i64::MAX as f64).contains(&bps) {
            return Err((line, "bandwidth number too big".into()));
        }
        Ok(Bandwidth { absolute: bps as u64, percent: 0 })
    }

    /// parse.y's `scspec`: `bandwidth [burst bandwidth for Nms]`.
    fn service_curve(c: &mut Cursor) -> PResult<ServiceCurve> {
        let line = c.line();
        let m2 = Self::bandwidth(c)?;
        let mut sc = ServiceCurve { m1: Bandwidth::default(), d: 0, m2 };
        if c.eat_word("burst") {
            sc.m1 = Self::bandwidth(c)?;
            c.expect_word("for")?;
            let w = c.string()?;
            sc.d = w
                .strip_suffix("ms")
                .and_then(|n| n.parse().ok())
                .ok_or((line, "time in scspec must be in ms".to_string()))?;
        }
        if sc.m1.percent != 0 || sc.m2.percent != 0 {
            return Err((line, "no bandwidth in % yet".into()));
        }
        Ok(sc)
    }

    /// `queue NAME [on IF | on { IF … }] OPTIONS`
    pub(super) fn queue(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        let name = Self::string_token(c)?;
        let ifaces: Vec<String> = if c.eat_word("on") {
            c.list(|c| {
                let line = c.line();
                if c.eat_punct("!") {
                    return Err((line, "syntax error".into()));
                }
                Self::string_token(c)
            })?
        } else {
            vec![]
        };
        let mut q = QueueDef { name: name.clone(), line, ..QueueDef::default() };
        let (mut bw, mut parent, mut default, mut qlimit, mut flows, mut quantum) =
            (false, false, false, false, false, false);
        let again = |set: bool, what: &str| -> PResult<()> {
            if set {
                Err((line, format!("{what} cannot be respecified")))
            } else {
                Ok(())
            }
        };
        if c.at_end() {
            return c.syntax();
        }
        while !c.at_end() {
            let l = c.line();
            match c.word()?.as_str() {
                "bandwidth" => {
                    let sc = Self::service_curve(c)?;
                    // pfctl's print_queuespec prints no bandwidth (nor its
                    // min and max) when it is zero, and the queue then
                    // reads back without one: refused rather than loaded
                    // as a queue whose `pfctl -sq` does not parse.
                    if sc.m1.absolute == 0 && sc.m2.absolute == 0 {
                        return Err((l, "bandwidth must be greater than 0".into()));
                    }
                    again(bw, "bandwidth")?;
                    bw = true;
                    q.linkshare = sc;
                    // optscs: [,] min … [,] max …, either order
                    for _ in 0..2 {
                        let save = c.pos;
                        c.eat_punct(",");
                        if c.eat_word("min") {
                            q.realtime = Self::service_curve(c)?;
                        } else if c.eat_word("max") {
                            q.upperlimit = Self::service_curve(c)?;
                        } else {
                            c.pos = save;
                            break;
                        }
                    }
                }
                "parent" => {
                    let p = Self::string_token(c)?;
                    again(parent, "parent")?;
                    parent = true;
                    q.parent = Some(p);
                }
                "default" => {
                    again(default, "default")?;
                    default = true;
                    q.default = true;
                }
                "qlimit" => {
                    let n = Self::queue_number(c)?;
                    again(qlimit, "qlimit")?;
                    if !(0..=65535).contains(&n) {
                        return Err((l, "qlimit out of range: max 65535".into()));
                    }
                    qlimit = true;
                    q.qlimit = Some(n as u16);
                }
                "flows" => {
                    let n = Self::queue_number(c)?;
                    if flows {
                        return Err((l, "number of flows cannot be respecified".into()));
                    }
                    if !(1..=32767).contains(&n) {
                        return Err((l, "number of flows out of range: max 32767".into()));
                    }
                    flows = true;
                    q.flows = Some(n as u16);
                }
                "quantum" => {
                    let n = Self::queue_number(c)?;
                    again(quantum, "quantum")?;
                    if !(1..=65535).contains(&n) {
                        return Err((l, "quantum out of range: max 65535".into()));
                    }
                    quantum = true;
                    q.quantum = Some(n as u16);
                }
                _ => return Err((l, "syntax error".into())),
            }
        }
        if ifaces.is_empty() && q.parent.is_none() {
            return Err((line, "root queue without interface".into()));
        }
        if let Some(i) = ifaces.iter().find(|i| !self.resolver.interface_exists(i)) {
            let _ = i;
            return Err((line, "not an interface".into()));
        }
        if !bw && !flows {
            return Err((line, "no bandwidth or flow specification".into()));
        }
        if name.len() >= QNAME_SIZE {
            return Err((line, "queuename too long".into()));
        }
        // One queue per interface named (the parent's when none is).
        let targets = if ifaces.is_empty() { vec![String::new()] } else { ifaces };
        for ifname in targets {
            let mut q = q.clone();
            q.ifname = ifname;
            self.add_queue(q, line)?;
        }
        Ok(())
    }

    fn queue_number(c: &mut Cursor) -> PResult<i64> {
        let line = c.line();
        match c.peek() {
            Some(t) if t.is_number() => {
                let w = c.word()?;
                w.parse::<i64>().map_err(|_| (line, format!("\"{w}\" invalid number: too large")))
            }
            _ => c.syntax(),
        }
    }

    /// pfctl_add_queue: a root queue goes last; a child goes after its
    /// parent's subtree and takes its interface, so that the list is in
    /// the order pfctl loads (and prints) the tree.
    fn add_queue(&mut self, mut q: QueueDef, line: usize) -> PResult<()> {
        let qs = &mut self.rs.queues;
        let Some(parent) = q.parent.clone() else {
            qs.push(q);
            return Ok(());
        };
        let Some(pi) = qs.iter().position(|p| p.name == parent) else {
            return Err((line, format!("parent {parent} of queue {} is not defined", q.name)));
        };
        if q.ifname.is_empty() {
            q.ifname = qs[pi].ifname.clone();
        }
        let mut end = pi + 1;
        while end < qs.len() && descends_from(qs, end, &parent) {
            end += 1;
        }
        qs.insert(end, q);
        Ok(())
    }
}

/// Whether queue `i` is below `ancestor` in the tree.
fn descends_from(qs: &[QueueDef], i: usize, ancestor: &str) -> bool {
    let mut cur = qs[i].parent.clone();
    while let Some(p) = cur {
        if p == ancestor {
            return true;
        }
        cur = qs.iter().find(|q| q.name == p).and_then(|q| q.parent.clone());
    }
    false
}

/// The checks pfctl makes on the queue tree before loading it (its
/// messages are `pfctl: …` and stop the load): a default or flow queue
/// must be a leaf, queues under a root with a bandwidth need one, and each
/// root needs a default queue.
///
/// pfctl.c's queue code was not at hand: the order and wording follow the
/// regress cases pfail58-61, which show each message.
pub fn check_queues(rs: &Ruleset) -> Result<(), String> {
    let qs = &rs.queues;
    let has_children = |name: &str| qs.iter().any(|q| q.parent.as_deref() == Some(name));
    fn root_of<'a>(qs: &'a [QueueDef], q: &'a QueueDef) -> Option<&'a QueueDef> {
        let mut cur = q;
        while let Some(p) = &cur.parent {
            cur = qs.iter().find(|x| &x.name == p)?;
        }
        Some(cur)
    }
    for q in qs {
        if q.default && has_children(&q.name) {
            return Err(format!("default queue {} is not a leaf queue", q.name));
        }
        if q.flows.is_some() && has_children(&q.name) {
            return Err(format!("flow queue {} is not a leaf queue", q.name));
        }
        let root_bw = root_of(qs, q).is_some_and(|r| r.linkshare.m2.is_set());
        if q.parent.is_some() && root_bw && !q.linkshare.m2.is_set() {
            return Err(format!("queue {}: no bandwidth was specified", q.name));
        }
    }
    for root in qs.iter().filter(|q| q.parent.is_none()) {
        let tree_has_default =
            qs.iter().any(|q| q.default && (q.name == root.name || descends_from_list(qs, q, &root.name)));
        if !tree_has_default {
            return Err("no default queue specified".into());
        }
    }
    Ok(())
}

fn descends_from_list(qs: &[QueueDef], q: &QueueDef, ancestor: &str) -> bool {
    qs.iter().position(|x| std::ptr::eq(x, q)).is_some_and(|i| descends_from(qs, i, ancestor))
}
