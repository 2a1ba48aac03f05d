//! The ruleset checksum `pfctl -si -v` prints (`Checksum: 0x…`).
//!
//! pf computes it in the kernel when a main ruleset is committed
//! (`pf_calc_chksum`): an MD5 over every rule's `pf_hash_rule` fields, the
//! fields pfsync peers must agree on for a state's rule to mean the same
//! rule (addresses, ports, interface, label, tags, action, direction, af,
//! proto, flags, state mode, …; not counters, timeouts or limits).
//!
//! This hashes the same fields in the same order with the same widths and
//! byte orders, from our rule model and with pf's constants. The digest
//! identifies a ruleset the way pf's does (the same rules give the same
//! sum; a change to a hashed field changes it; a timeout does not), but it
//! is not promised to equal an OpenBSD kernel's for the same pf.conf: pf
//! hashes its in-kernel `pf_rule`, whose fields we rebuild (tag ids are
//! ours, and fields we have no feature for hash as zero).

use std::net::IpAddr;

use crate::compile::CompiledRuleset;
use crate::model::{
    Action, Addr, AddressFamily, BlockAction, Direction, Endpoint, IfAddrModifier, PortOp, Rule, StateMode,
};
use md5::{Digest, Md5};

// pfvar.h values.
const PF_ADDR_ADDRMASK: u8 = 0;
const PF_ADDR_NOROUTE: u8 = 1;
const PF_ADDR_DYNIFTL: u8 = 2;
const PF_ADDR_TABLE: u8 = 3;
const PF_ADDR_RTLABEL: u8 = 4;
const PF_ADDR_URPFFAILED: u8 = 5;
/// RTLABEL_LEN
const RTLABEL_LEN: usize = 32;
const PF_ADDR_RANGE: u8 = 6;
const PFI_AFLAG_NETWORK: u8 = 0x01;
const PFI_AFLAG_BROADCAST: u8 = 0x02;
const PFI_AFLAG_PEER: u8 = 0x04;
const PFI_AFLAG_NOALIAS: u8 = 0x08;
pub(crate) const IFNAMSIZ: usize = 16;
const PF_TABLE_NAME_SIZE: usize = 32;
const PFRULE_RETURNRST: u32 = 0x0001;
const PFRULE_RETURNICMP: u32 = 0x0004;
const PFRULE_RETURN: u32 = 0x0008;
const PFRULE_NOSYNC: u32 = 0x0010;
const PFRULE_SRCTRACK: u32 = 0x0020;
const PFRULE_RULESRCTRACK: u32 = 0x0040;
const PFRULE_IFBOUND: u32 = 0x0001_0000;
const PFRULE_STATESLOPPY: u32 = 0x0002_0000;
const PFRULE_PFLOW: u32 = 0x0004_0000;
const PF_PASS: u8 = 0;
const PF_DROP: u8 = 1;
const PF_MATCH: u8 = 12;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 24;

/// A fixed-size name field: the bytes, then zeros (`PF_MD5_UPD` on a
/// `char[N]` hashes all N bytes).
fn padded(m: &mut Md5, s: &str, n: usize) {
    let mut b = vec![0u8; n];
    let k = s.len().min(n - 1);
    b[..k].copy_from_slice(&s.as_bytes()[..k]);
    m.update(b);
}

/// A `struct pf_addr`: 16 bytes, an IPv4 address in the first four.
fn pf_addr(m: &mut Md5, a: IpAddr) {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => b = v.octets(),
    }
    m.update(b);
}

fn mask(m: &mut Md5, a: IpAddr, prefix: u8) {
    let bits = prefix as u32;
    let b: [u8; 16] = match a {
        IpAddr::V4(_) => {
            let mut b = [0u8; 16];
            let v = if bits == 0 { 0 } else { u32::MAX << (32 - bits.min(32)) };
            b[..4].copy_from_slice(&v.to_be_bytes());
            b
        }
        IpAddr::V6(_) => {
            let v = if bits == 0 { 0 } else { u128::MAX << (128 - bits.min(128)) };
            v.to_be_bytes()
        }
    };
    m.update(b);
}

/// pf_hash_rule_addr.
fn hash_endpoint(m: &mut Md5, e: &Endpoint) {
    match &e.addr {
        Addr::Any => {
            m.update([PF_ADDR_ADDRMASK]);
            m.update([0; 32]);
        }
        Addr::Net(n) => {
            m.update([PF_ADDR_ADDRMASK]);
            pf_addr(m, n.addr);
            mask(m, n.addr, n.prefix);
        }
        Addr::Dynamic { ifname, modifier, no_alias, .. } => {
            m.update([PF_ADDR_DYNIFTL]);
            padded(m, ifname, IFNAMSIZ);
            let flags = match modifier {
                IfAddrModifier::Address => 0,
                IfAddrModifier::Network => PFI_AFLAG_NETWORK,
                IfAddrModifier::Broadcast => PFI_AFLAG_BROADCAST,
                IfAddrModifier::Peer => PFI_AFLAG_PEER,
            } | if *no_alias { PFI_AFLAG_NOALIAS } else { 0 };
            m.update([flags]);
        }
        Addr::Table(t) => {
            m.update([PF_ADDR_TABLE]);
            padded(m, t, PF_TABLE_NAME_SIZE);
        }
        // pf_hash_rule_addr hashes only the type of these.
        Addr::Range(..) => m.update([PF_ADDR_RANGE]),
        Addr::NoRoute => m.update([PF_ADDR_NOROUTE]),
        Addr::UrpfFailed => m.update([PF_ADDR_URPFFAILED]),
        Addr::RouteLabel(l) => {
            m.update([PF_ADDR_RTLABEL]);
            padded(m, l, RTLABEL_LEN);
        }
    }
    // PF_OP_*: ports in network order; a unary operator stores its port twice.
    let (op, p0, p1) = match e.port {
        None => (0u8, 0u16, 0u16),
        Some(PortOp::Inside(a, b)) => (1, a, b),
        Some(PortOp::Eq(a)) => (2, a, a),
        Some(PortOp::Ne(a)) => (3, a, a),
        Some(PortOp::Lt(a)) => (4, a, a),
        Some(PortOp::Le(a)) => (5, a, a),
        Some(PortOp::Gt(a)) => (6, a, a),
        Some(PortOp::Ge(a)) => (7, a, a),
        Some(PortOp::Outside(a, b)) => (8, a, b),
        Some(PortOp::Range(a, b)) => (9, a, b),
    };
    m.update(p0.to_be_bytes());
    m.update(p1.to_be_bytes());
    m.update([e.negated as u8, op]);
}

/// pf_hash_rule, for one rule; `tag_id` is the kernel's id of the rule's
/// `tagged` name (0 without one).
fn hash_rule(m: &mut Md5, r: &Rule, tag_id: u16) {
    hash_endpoint(m, &r.src);
    hash_endpoint(m, &r.dst);
    m.update(r.label.as_deref().unwrap_or("").as_bytes());
    m.update(r.interface.as_ref().map_or("", |i| i.name.as_str()).as_bytes());
    // rcv_ifname: `received-on` is not a rule option here.
    m.update(r.tagged.as_ref().map_or("", |t| t.name.as_str()).as_bytes());
    m.update(tag_id.to_be_bytes());
    // os_fingerprint (PF_OSFP_ANY), prob, uid[2], uid.op, gid[2], gid.op: none here.
    m.update([0; 8]);
    m.update([0; 8]);
    m.update([0]);
    m.update([0; 8]);
    m.update([0]);
    let so = &r.state_opts;
    let mut flags = match r.action {
        Action::Block(BlockAction::ReturnRst { .. }) => PFRULE_RETURNRST,
        Action::Block(BlockAction::ReturnIcmp { .. }) => PFRULE_RETURNICMP,
        Action::Block(BlockAction::Return) => PFRULE_RETURN,
        _ => 0,
    };
    if so.no_sync {
        flags |= PFRULE_NOSYNC;
    }
    match so.source_track {
        Some(crate::model::SourceTrack::Rule) => flags |= PFRULE_SRCTRACK | PFRULE_RULESRCTRACK,
        Some(crate::model::SourceTrack::Global) => flags |= PFRULE_SRCTRACK,
        None => {}
    }
    if so.if_bound {
        flags |= PFRULE_IFBOUND;
    }
    if so.sloppy {
        flags |= PFRULE_STATESLOPPY;
    }
    if so.pflow {
        flags |= PFRULE_PFLOW;
    }
    m.update(flags.to_be_bytes());
    let action = match r.action {
        Action::Pass => PF_PASS,
        Action::Block(_) => PF_DROP,
        Action::Match => PF_MATCH,
    };
    let direction = match r.direction {
        Direction::Both => 0,
        Direction::In => 1,
        Direction::Out => 2,
    };
    let af = match r.af {
        None => 0,
        Some(AddressFamily::Inet) => AF_INET,
        Some(AddressFamily::Inet6) => AF_INET6,
    };
    let keep_state = match r.keep_state {
        StateMode::NoState => 0,
        StateMode::Keep => 1,
        StateMode::Modulate => 2,
        StateMode::Synproxy => 3,
    };
    // pf stores icmp type and code plus one (0: none).
    let (ty, code) = match r.icmp {
        Some(i) => (i.icmp_type.wrapping_add(1), i.code.map_or(0, |c| c.wrapping_add(1))),
        None => (0, 0),
    };
    let rt = match r.route.as_ref().map(|x| x.kind) {
        None => 0,
        Some(crate::model::RouteKind::RouteTo) => 1,
        Some(crate::model::RouteKind::DupTo) => 2,
        Some(crate::model::RouteKind::ReplyTo) => 3,
    };
    m.update([
        action,
        direction,
        af,
        r.quick as u8,
        r.interface.as_ref().is_some_and(|i| i.negated) as u8,
        0, // rcvifnot
        r.tagged.as_ref().is_some_and(|t| t.negated) as u8,
        keep_state,
        r.proto.unwrap_or(0),
        ty,
        code,
        r.flags.set,
        r.flags.mask,
        r.allow_opts as u8,
        rt,
        r.tos.unwrap_or(0),
    ]);
}

/// `pf_status.pf_chksum` for a loaded ruleset: all zeros before the first
/// load (pf's status starts zeroed), else the MD5 of the rules.
pub fn ruleset_checksum(rs: &CompiledRuleset) -> [u8; 16] {
    if rs.gen == 0 {
        return [0; 16];
    }
    let mut m = Md5::new();
    for r in &rs.rules {
        hash_rule(&mut m, &r.rule, r.tagged.map_or(0, |t| t.0));
    }
    m.finalize().into()
}
