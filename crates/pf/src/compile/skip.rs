//! Skip steps (pfctl's calc_skip_steps) and the hot copy of each rule's
//! match fields the rule walk reads.

use super::*;

/// `HotRule::flags`: the rule has an interface to match.
pub const HOT_IFM: u8 = 1;
/// `inet6` rule: never matches IPv4.
pub const HOT_INET6: u8 = 2;
/// `inet` rule: never matches IPv6.
pub const HOT_INET: u8 = 32;
/// The source address is not a plain (non-negated) `any` or network:
/// match it with the full `CRule`.
pub const HOT_SRC_SLOW: u8 = 4;
pub const HOT_DST_SLOW: u8 = 8;
/// ICMP type, TOS, TCP flags, `tagged`, `user` or `group` to check in the
/// full `CRule`.
pub const HOT_REST: u8 = 16;

/// The fields the rule walk reads for every rule, packed so that walking
/// N rules reads N small consecutive records instead of N big `CRule`s.
#[derive(Debug, Clone, Copy)]
pub struct HotRule {
    pub skip: [u32; SKIP_COUNT],
    /// (network, mask) for a fast address: `any` is (0, 0).
    pub src: (u32, u32),
    pub dst: (u32, u32),
    pub src_port: Option<PortOp>,
    pub dst_port: Option<PortOp>,
    pub proto: Option<u8>,
    pub dir: Option<softnet_core::filter::Direction>,
    pub flags: u8,
}

impl HotRule {
    pub(super) fn of(r: &CRule) -> HotRule {
        let fast = |e: &EndpointMatch| match e.addr {
            _ if e.negated => None,
            AddrMatch::Any => Some((0, 0)),
            AddrMatch::Net { net, mask } => Some((net, mask)),
            _ => None,
        };
        let mut flags = 0;
        if r.ifm.is_some() {
            flags |= HOT_IFM;
        }
        match r.rule.af {
            Some(AddressFamily::Inet6) => flags |= HOT_INET6,
            Some(AddressFamily::Inet) => flags |= HOT_INET,
            None => {}
        }
        let src = fast(&r.src).unwrap_or_else(|| {
            flags |= HOT_SRC_SLOW;
            (0, 0)
        });
        let dst = fast(&r.dst).unwrap_or_else(|| {
            flags |= HOT_DST_SLOW;
            (0, 0)
        });
        if r.icmp.is_some()
            || r.tos.is_some()
            || !r.flags.is_any()
            || r.tagged.is_some()
            || r.rule.user.is_some()
            || r.rule.group.is_some()
            || r.rule.fragment
            || r.rule.probability.is_some()
            || r.rcv.is_some()
            || r.rule.once
            || r.pktrate.is_some()
            || r.rule.prio.is_some()
        {
            flags |= HOT_REST;
        }
        HotRule {
            skip: r.skip,
            src,
            dst,
            src_port: r.src.port,
            dst_port: r.dst.port,
            proto: r.proto,
            dir: r.dir,
            flags,
        }
    }
}

pub(super) fn same_field(a: &CRule, b: &CRule, f: usize) -> bool {
    match f {
        SKIP_IFP => match (&a.ifm, &b.ifm) {
            (None, None) => true,
            (Some(x), Some(y)) => x.name == y.name && x.negated == y.negated,
            _ => false,
        },
        SKIP_DIR => a.dir == b.dir,
        SKIP_AF => a.rule.af == b.rule.af,
        SKIP_PROTO => a.proto == b.proto,
        SKIP_SRC_ADDR => a.rule.src.addr == b.rule.src.addr && a.rule.src.negated == b.rule.src.negated,
        SKIP_SRC_PORT => a.rule.src.port == b.rule.src.port,
        SKIP_DST_ADDR => a.rule.dst.addr == b.rule.dst.addr && a.rule.dst.negated == b.rule.dst.negated,
        SKIP_DST_PORT => a.rule.dst.port == b.rule.dst.port,
        _ => unreachable!(),
    }
}

/// pfctl's `calc_skip_steps`: for each field, every rule of a run of
/// consecutive rules equal in that field skips to the first rule after
/// the run (the rule count when the run reaches the end).
pub fn calc_skip_steps(rules: &mut [CRule]) {
    let n = rules.len();
    for f in 0..SKIP_COUNT {
        let mut head = 0;
        for cur in 1..=n {
            if cur == n || !same_field(&rules[head], &rules[cur], f) {
                for r in &mut rules[head..cur] {
                    r.skip[f] = cur as u32;
                }
                head = cur;
            }
        }
    }
}
