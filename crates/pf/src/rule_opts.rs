//! Rule options besides the match on addresses and ports, as pf.conf(5) has
//! them: `scrub (…)`, `set (prio, queue, tos, delay)`, `divert-*`,
//! `user`/`group`, `received-on`, `probability`, `once`, `max-pkt-rate`,
//! `prio`, `fragment`; and the statements `queue` and `set reassemble`.
//!
//! The parser fills these in and the printer prints them as pfctl's
//! print_rule / print_queuespec do. What the packet filter cannot do yet is
//! refused at load by `check_supported`.

use std::fmt::Write;
use std::net::IpAddr;

/// `scrub (no-df min-ttl N max-mss N random-id reassemble tcp)` on a
/// pass or match rule: pf's PFSTATE_NODF, PFSTATE_RANDOMID,
/// PFSTATE_SCRUB_TCP, `min_ttl`, `max_mss`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scrub {
    pub no_df: bool,
    pub random_id: bool,
    pub min_ttl: Option<u8>,
    pub max_mss: Option<u16>,
    pub reassemble_tcp: bool,
}

impl Scrub {
    pub fn any(&self) -> bool {
        *self != Scrub::default()
    }

    /// print_rule's ` scrub (…)`: no-df, random-id, min-ttl, reassemble
    /// tcp, max-mss, in that order.
    pub fn format(&self) -> String {
        let mut parts: Vec<String> = vec![];
        if self.no_df {
            parts.push("no-df".into());
        }
        if self.random_id {
            parts.push("random-id".into());
        }
        if let Some(t) = self.min_ttl {
            parts.push(format!("min-ttl {t}"));
        }
        if self.reassemble_tcp {
            parts.push("reassemble tcp".into());
        }
        if let Some(m) = self.max_mss {
            parts.push(format!("max-mss {m}"));
        }
        format!(" scrub ({})", parts.join(" "))
    }
}

/// A queue a rule assigns packets to: `set queue q` or `set queue (q, pq)`
/// (the second for TOS lowdelay and bare ACKs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueAssign {
    pub name: String,
    pub prio_name: Option<String>,
}

/// `set (prio …, queue …, tos …, delay …)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SetActions {
    /// `prio N` is `(N, N)`; `prio (a, b)` the second for TOS lowdelay and
    /// bare ACKs.
    pub prio: Option<(u8, u8)>,
    pub queue: Option<QueueAssign>,
    pub tos: Option<u8>,
    /// `delay` in milliseconds.
    pub delay: Option<u16>,
}

impl SetActions {
    pub fn any(&self) -> bool {
        *self != SetActions::default()
    }

    /// print_rule's ` set (…)`.
    pub fn format(&self) -> String {
        let mut parts: Vec<String> = vec![];
        if let Some((a, b)) = self.prio {
            parts.push(if a == b { format!("prio {a}") } else { format!("prio({a}, {b})") });
        }
        if let Some(q) = &self.queue {
            parts.push(match &q.prio_name {
                Some(p) => format!("queue({}, {p})", q.name),
                None => format!("queue {}", q.name),
            });
        }
        if let Some(t) = self.tos {
            parts.push(format!("tos 0x{t:02x}"));
        }
        if let Some(d) = self.delay {
            parts.push(format!("delay {d}"));
        }
        format!(" set ({})", parts.join(", "))
    }
}

/// `divert-to ADDR port P`, `divert-reply`, `divert-packet port P`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Divert {
    To { addr: IpAddr, port: u16 },
    Reply,
    Packet { port: u16 },
}

impl Divert {
    pub fn keyword(&self) -> &'static str {
        match self {
            Divert::To { .. } => "divert-to",
            Divert::Reply => "divert-reply",
            Divert::Packet { .. } => "divert-packet",
        }
    }

    pub fn format(&self) -> String {
        match self {
            Divert::To { addr, port } => format!(" divert-to {addr} port {port}"),
            Divert::Reply => " divert-reply".into(),
            Divert::Packet { port } => format!(" divert-packet port {port}"),
        }
    }
}

/// The uid or gid `user`/`group` compare with when no local socket owns
/// the packet (pf's `-1`, printed `unknown`).
pub const ID_UNKNOWN: u32 = u32::MAX;

/// A `user` or `group` comparison, as pf's PF_OP_* on ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdOp {
    Eq(u32),
    Ne(u32),
    Lt(u32),
    Le(u32),
    Gt(u32),
    Ge(u32),
    /// `a >< b`
    Inside(u32, u32),
    /// `a <> b`
    Outside(u32, u32),
}

impl IdOp {
    /// pf_match_uid / pf_match_gid: an unknown id (no local socket)
    /// satisfies only `= unknown` and `!= N`.
    pub fn matches(&self, id: u32) -> bool {
        if id == ID_UNKNOWN && !matches!(self, IdOp::Eq(_) | IdOp::Ne(_)) {
            return false;
        }
        match *self {
            IdOp::Eq(a) => id == a,
            IdOp::Ne(a) => id != a,
            IdOp::Lt(a) => id < a,
            IdOp::Le(a) => id <= a,
            IdOp::Gt(a) => id > a,
            IdOp::Ge(a) => id >= a,
            IdOp::Inside(a, b) => id > a && id < b,
            IdOp::Outside(a, b) => id < a || id > b,
        }
    }

    /// print_ugid: ` user = 3`, ` group != unknown`, ` user 10 >< 20`.
    pub fn format(&self, what: &str) -> String {
        let id = |v: u32| if v == ID_UNKNOWN { "unknown".to_string() } else { v.to_string() };
        match *self {
            IdOp::Eq(a) => format!(" {what} = {}", id(a)),
            IdOp::Ne(a) => format!(" {what} != {}", id(a)),
            IdOp::Lt(a) => format!(" {what} < {a}"),
            IdOp::Le(a) => format!(" {what} <= {a}"),
            IdOp::Gt(a) => format!(" {what} > {a}"),
            IdOp::Ge(a) => format!(" {what} >= {a}"),
            IdOp::Inside(a, b) => format!(" {what} {a} >< {b}"),
            IdOp::Outside(a, b) => format!(" {what} {a} <> {b}"),
        }
    }
}

/// `received-on [!] IF`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceivedOn {
    pub name: String,
    pub negated: bool,
}

/// `probability P`: pf keeps it as a fraction of 2^32 (`r->prob`),
/// rounded as parse.y does; 0 stands for "always" and a tiny non-zero
/// probability becomes 1.
pub fn probability_from(p: f64) -> Option<u32> {
    let v = (p * u32::MAX as f64 + 0.5).floor();
    if !(0.0..=u32::MAX as f64).contains(&v) {
        return None;
    }
    Some((v as u32).max(1))
}

/// print_rule's `probability N%`: `%f` of the percentage with trailing
/// zeros (and a trailing point) removed.
pub fn format_probability(prob: u32) -> String {
    let mut s = format!("{:.6}", prob as f64 * 100.0 / (u32::MAX as f64 + 1.0));
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!(" probability {s}%")
}

/// A bandwidth as pf_queue_bwspec: bits per second, or a percentage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Bandwidth {
    pub absolute: u64,
    pub percent: u8,
}

impl Bandwidth {
    pub fn is_set(&self) -> bool {
        self.absolute != 0 || self.percent != 0
    }

    /// print_bwspec: the largest of K, M, G that divides the rate.
    pub fn format(&self) -> String {
        if self.percent != 0 {
            return format!("{}%", self.percent);
        }
        let mut rate = self.absolute;
        let units = [' ', 'K', 'M', 'G'];
        let mut i = 0;
        while rate >= 1000 && i <= 3 && rate.is_multiple_of(1000) {
            rate /= 1000;
            i += 1;
        }
        // `%llu%c` with " KMG"[i]: a rate under 1K prints a trailing blank;
        // i == 4 (thousands of G) indexes the string's NUL, printed as
        // nothing here.
        match units.get(i) {
            Some(u) => format!("{rate}{u}"),
            None => format!("{rate}"),
        }
    }
}

/// A service curve: `m2 [burst m1 for d ms]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServiceCurve {
    pub m1: Bandwidth,
    pub d: u32,
    pub m2: Bandwidth,
}

impl ServiceCurve {
    fn format(&self, prefix: &str) -> String {
        let mut s = format!("{prefix}{}", self.m2.format());
        if self.d != 0 {
            let _ = write!(s, " burst {} for {}ms", self.m1.format(), self.d);
        }
        s
    }
}

/// One `queue` definition, after expansion over its interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct QueueDef {
    pub name: String,
    pub parent: Option<String>,
    pub ifname: String,
    pub linkshare: ServiceCurve,
    pub realtime: ServiceCurve,
    pub upperlimit: ServiceCurve,
    /// `flows N` (a flow queue), `quantum N`.
    pub flows: Option<u16>,
    pub quantum: Option<u16>,
    pub default: bool,
    pub qlimit: Option<u16>,
    pub line: usize,
}

impl QueueDef {
    /// print_queuespec.
    pub fn format(&self) -> String {
        let mut s = format!("queue {}", self.name);
        match &self.parent {
            Some(p) => {
                let _ = write!(s, " parent {p}");
            }
            None if !self.ifname.is_empty() => {
                let _ = write!(s, " on {}", self.ifname);
            }
            None => {}
        }
        if let Some(f) = self.flows {
            let _ = write!(s, " flows {f}");
            if let Some(q) = self.quantum.filter(|q| *q > 0) {
                let _ = write!(s, " quantum {q}");
            }
        }
        if self.linkshare.m1.absolute != 0 || self.linkshare.m2.absolute != 0 {
            s.push_str(&self.linkshare.format(" bandwidth "));
            if self.realtime.m2.is_set() {
                s.push_str(&self.realtime.format(", min "));
            }
            if self.upperlimit.m2.is_set() {
                s.push_str(&self.upperlimit.format(", max "));
            }
        }
        if self.default {
            s.push_str(" default");
        }
        if let Some(q) = self.qlimit.filter(|q| *q > 0) {
            let _ = write!(s, " qlimit {q}");
        }
        s
    }
}

/// `set reassemble yes|no [no-df]` (pf's PF_REASS_ENABLED, PF_REASS_NODF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reassemble {
    pub enabled: bool,
    pub no_df: bool,
    /// Where it was set (for load-time errors); 0 for the default.
    pub line: usize,
}

impl Default for Reassemble {
    fn default() -> Self {
        Reassemble { enabled: true, no_df: false, line: 0 }
    }
}

impl Reassemble {
    /// pfctl_set_reassembly prints `set reassemble %s %s` (yes/no, then
    /// `no-df` or nothing: hence the trailing blank).
    pub fn format(&self) -> String {
        format!("set reassemble {} {}", if self.enabled { "yes" } else { "no" }, if self.no_df { "no-df" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_prints_as_pfctl() {
        assert_eq!(format_probability(probability_from(0.5).unwrap()), " probability 50%");
        assert_eq!(format_probability(probability_from(0.008).unwrap()), " probability 0.8%");
        assert_eq!(format_probability(probability_from(1.0).unwrap()), " probability 100%");
        assert_eq!(probability_from(0.0), Some(1));
        assert_eq!(probability_from(1.5), None);
        assert_eq!(probability_from(-0.1), None);
    }

    #[test]
    fn unknown_ids_match_only_eq_unknown_and_ne() {
        assert!(!IdOp::Eq(3).matches(ID_UNKNOWN));
        assert!(IdOp::Eq(ID_UNKNOWN).matches(ID_UNKNOWN));
        assert!(IdOp::Ne(0).matches(ID_UNKNOWN));
        assert!(!IdOp::Ge(0).matches(ID_UNKNOWN));
        assert!(!IdOp::Outside(10, 20).matches(ID_UNKNOWN));
        assert!(IdOp::Inside(10, 20).matches(15));
        assert_eq!(IdOp::Eq(ID_UNKNOWN).format("user"), " user = unknown");
        assert_eq!(IdOp::Inside(1, 5).format("group"), " group 1 >< 5");
    }

    #[test]
    fn bandwidth_prints_the_largest_unit() {
        let bw = |absolute| Bandwidth { absolute, percent: 0 }.format();
        assert_eq!(bw(1_000_000), "1M");
        assert_eq!(bw(1000), "1K");
        assert_eq!(bw(1_500_000), "1500K");
        assert_eq!(bw(999), "999 ");
        assert_eq!(bw(100_000_000), "100M");
        assert_eq!(bw(2_000_000_000), "2G");
    }

    #[test]
    fn scrub_and_set_print_in_pfctls_order() {
        let s = Scrub { no_df: true, random_id: false, min_ttl: Some(15), max_mss: Some(224), reassemble_tcp: true };
        assert_eq!(s.format(), " scrub (no-df min-ttl 15 reassemble tcp max-mss 224)");
        let a = SetActions {
            prio: Some((5, 2)),
            queue: Some(QueueAssign { name: "q".into(), prio_name: None }),
            tos: Some(0x10),
            delay: None,
        };
        assert_eq!(a.format(), " set (prio(5, 2), queue q, tos 0x10)");
        assert_eq!(Reassemble { enabled: false, no_df: false, line: 1 }.format(), "set reassemble no ");
    }
}
