//! Nexthop objects (RTM_NEWNEXTHOP / RTM_DELNEXTHOP, linux/nexthop.h):
//! what routes with RTA_NH_ID point to. FRR's zebra installs its routes
//! this way on kernels that have them (5.3 and later): a next hop, or a
//! group of them, is an object of its own with an id, and each route
//! names the id instead of carrying its gateway.
//!
//! netlink-packet-route has no nexthop messages, so `NhMessage` is one
//! more message type for netlink-packet-core (its `NetlinkDeserializable`
//! and `NetlinkSerializable`), its attributes read with the core's
//! `NlasIterator`.
//!
//! The cache follows the kernel's rules (net/ipv4/nexthop.c):
//! * replacing a nexthop changes every route that uses it, directly or
//!   through a group; the kernel says so with RTM_NEWROUTE for the routes
//!   only in compat mode (net.ipv4.nexthop_compat_mode), so the sync
//!   re-resolves the prefixes itself;
//! * deleting a nexthop removes it from the groups it is in (a group left
//!   empty is deleted too) and deletes the routes that use it **without a
//!   route message**: the sync removes those routes from its mirror.

use super::translate::{Fam, KHop, KKind};
use netlink_packet_core::{
    DecodeError, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, NlasIterator, NLM_F_DUMP, NLM_F_REQUEST,
};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Message types (linux/rtnetlink.h).
pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;
/// The rtnetlink group of nexthop changes (enum rtnetlink_groups).
pub const RTNLGRP_NEXTHOP: u32 = 32;

/// struct nhmsg: family, scope, protocol, reserved, flags.
const NHMSG_LEN: usize = 8;

/// Attributes (enum nexthop attributes in linux/nexthop.h).
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const NHA_ENCAP_TYPE: u16 = 7;
const NHA_ENCAP: u16 = 8;
const NHA_FDB: u16 = 11;

/// What a nexthop object is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NhKind {
    /// One next hop: a gateway, an interface (kernel ifindex, 0: none), or
    /// both.
    Hop { gateway: Option<IpAddr>, oif: u32 },
    /// Dropped silently.
    Blackhole,
    /// A group: the ids of its members and their weights (ECMP).
    Group(Vec<(u32, u16)>),
    /// Not representable in softnet (encapsulation, FDB nexthops):
    /// routes that use it are counted and logged.
    Unsupported(String),
}

/// One RTM_NEWNEXTHOP / RTM_DELNEXTHOP.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NhMessage {
    pub id: u32,
    pub kind: NhKind,
}

/// A nexthop message with its type, for netlink-packet-core.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NhNetlinkMessage {
    New(NhMessage),
    Del(NhMessage),
    /// RTM_GETNEXTHOP with an empty nhmsg (a dump request).
    Get,
}

fn u32_of(v: &[u8]) -> Result<u32, DecodeError> {
    v.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| "short u32 attribute".into())
}

impl NhMessage {
    /// Parses the body of a nexthop message (after the netlink header).
    pub fn parse(payload: &[u8]) -> Result<NhMessage, DecodeError> {
        if payload.len() < NHMSG_LEN {
            return Err(format!("nexthop message of {} bytes", payload.len()).into());
        }
        let family = payload[0];
        let mut id = None;
        let mut gateway = None;
        let mut oif = 0;
        let mut group = None;
        let mut blackhole = false;
        let mut unsupported = None;
        for nla in NlasIterator::new(&payload[NHMSG_LEN..]) {
            let nla = nla?;
            let v = nla.value();
            match nla.kind() {
                NHA_ID => id = Some(u32_of(v)?),
                NHA_OIF => oif = u32_of(v)?,
                NHA_BLACKHOLE => blackhole = true,
                NHA_GATEWAY => {
                    gateway = Some(match (family as i32, v.len()) {
                        (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
                        (libc::AF_INET6, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).expect("16 bytes"))),
                        (f, n) => return Err(format!("nexthop gateway of {n} bytes, family {f}").into()),
                    })
                }
                // struct nexthop_grp: u32 id, u8 weight (minus one), u8
                // and u16 reserved.
                NHA_GROUP => {
                    if v.len() % 8 != 0 {
                        return Err(format!("nexthop group of {} bytes", v.len()).into());
                    }
                    group = Some(
                        v.chunks_exact(8)
                            .map(|g| (u32::from_ne_bytes([g[0], g[1], g[2], g[3]]), u16::from(g[4]) + 1))
                            .collect::<Vec<_>>(),
                    )
                }
                NHA_ENCAP_TYPE | NHA_ENCAP => unsupported = Some("encapsulation".to_string()),
                NHA_FDB => unsupported = Some("FDB nexthop".to_string()),
                _ => {}
            }
        }
        let id = id.ok_or_else(|| DecodeError::from("nexthop message without NHA_ID"))?;
        let kind = if let Some(why) = unsupported {
            NhKind::Unsupported(why)
        } else if blackhole {
            NhKind::Blackhole
        } else if let Some(g) = group {
            NhKind::Group(g)
        } else {
            NhKind::Hop { gateway, oif }
        };
        Ok(NhMessage { id, kind })
    }
}

impl NetlinkDeserializable for NhNetlinkMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        match header.message_type {
            RTM_NEWNEXTHOP => NhMessage::parse(payload).map(NhNetlinkMessage::New),
            RTM_DELNEXTHOP => NhMessage::parse(payload).map(NhNetlinkMessage::Del),
            t => Err(format!("not a nexthop message: type {t}").into()),
        }
    }
}

impl NetlinkSerializable for NhNetlinkMessage {
    fn message_type(&self) -> u16 {
        match self {
            NhNetlinkMessage::New(_) => RTM_NEWNEXTHOP,
            NhNetlinkMessage::Del(_) => RTM_DELNEXTHOP,
            NhNetlinkMessage::Get => RTM_GETNEXTHOP,
        }
    }

    /// Only the dump request is ever sent: an nhmsg of AF_UNSPEC, no
    /// attributes (every nexthop of every family).
    fn buffer_len(&self) -> usize {
        NHMSG_LEN
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..NHMSG_LEN].fill(0);
    }
}

/// The dump request: RTM_GETNEXTHOP, NLM_F_DUMP.
pub fn dump_request(seq: u32) -> Vec<u8> {
    let mut req = netlink_packet_core::NetlinkMessage::new(
        NetlinkHeader::default(),
        netlink_packet_core::NetlinkPayload::InnerMessage(NhNetlinkMessage::Get),
    );
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.header.sequence_number = seq;
    req.finalize();
    let mut wire = vec![0u8; req.buffer_len()];
    req.serialize(&mut wire);
    wire
}

/// Why a route's nexthop object gives no next hops.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NhError {
    /// Not heard of (yet): the route is tried again.
    Unknown(u32),
    /// Heard of, but softnet cannot forward as it says.
    Unsupported(String),
}

impl std::fmt::Display for NhError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NhError::Unknown(id) => write!(f, "nexthop object {id} not known"),
            NhError::Unsupported(why) => f.write_str(why),
        }
    }
}

/// The nexthop objects of the namespace, by id.
#[derive(Default)]
pub struct NhCache {
    objs: HashMap<u32, NhKind>,
}

/// What a change to the cache means for the routes that use it.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct NhChange {
    /// Objects whose routes resolve differently now: re-flushed.
    pub changed: BTreeSet<u32>,
    /// Objects gone: the kernel deleted their routes without a message.
    pub deleted: BTreeSet<u32>,
}

impl NhCache {
    pub fn len(&self) -> usize {
        self.objs.len()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.objs.contains_key(&id)
    }

    /// RTM_NEWNEXTHOP: a new object or a replaced one. A replaced hop
    /// changes the groups it is in as well.
    pub fn insert(&mut self, m: NhMessage) -> NhChange {
        let mut c = NhChange::default();
        if self.objs.get(&m.id) == Some(&m.kind) {
            return c;
        }
        let replaced = self.objs.insert(m.id, m.kind).is_some();
        if replaced {
            c.changed.insert(m.id);
            c.changed.extend(self.groups_with(m.id));
        }
        c
    }

    /// RTM_DELNEXTHOP: the object goes, and out of every group it was in;
    /// a group left empty goes too.
    pub fn remove(&mut self, id: u32) -> NhChange {
        let mut c = NhChange::default();
        if self.objs.remove(&id).is_none() {
            return c;
        }
        c.deleted.insert(id);
        for g in self.groups_with(id) {
            let Some(NhKind::Group(members)) = self.objs.get_mut(&g) else { continue };
            members.retain(|(m, _)| *m != id);
            if members.is_empty() {
                self.objs.remove(&g);
                c.deleted.insert(g);
            } else {
                c.changed.insert(g);
            }
        }
        c
    }

    /// After a dump (a resync): the cache becomes `fresh`; what differs
    /// from before is reported as if the changes had been heard.
    pub fn replace_all(&mut self, fresh: NhCache) -> NhChange {
        let mut c = NhChange::default();
        for (id, k) in &self.objs {
            match fresh.objs.get(id) {
                None => {
                    c.deleted.insert(*id);
                }
                Some(n) if n != k => {
                    c.changed.insert(*id);
                    c.changed.extend(fresh.groups_with(*id));
                }
                Some(_) => {}
            }
        }
        *self = fresh;
        c
    }

    fn groups_with(&self, id: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .objs
            .iter()
            .filter(|(_, k)| matches!(k, NhKind::Group(ms) if ms.iter().any(|(m, _)| *m == id)))
            .map(|(g, _)| *g)
            .collect();
        v.sort_unstable();
        v
    }

    /// What a route naming object `id` does, in family `A`: one hop, a
    /// group's hops (ECMP; weights other than equal are not kept: softnet's
    /// multipath is equal-cost, as OpenBSD's), or a blackhole. An error
    /// when the object is not known (yet: retried) or softnet cannot hold
    /// it (counted as not representable).
    pub fn resolve<A: Fam>(&self, id: u32) -> Result<KKind<A>, NhError> {
        let hop = |id: u32| -> Result<Option<KHop<A>>, NhError> {
            match self.objs.get(&id) {
                None => Err(NhError::Unknown(id)),
                Some(NhKind::Hop { gateway, oif }) => {
                    let gateway = match gateway {
                        Some(g) => Some(A::from_std(*g).ok_or_else(|| {
                            NhError::Unsupported(format!("nexthop {id}: gateway {g} of another family"))
                        })?),
                        None => None,
                    };
                    Ok(Some(KHop { gateway, oif: *oif }))
                }
                Some(NhKind::Blackhole) => Ok(None),
                Some(NhKind::Group(_)) => Err(NhError::Unsupported(format!("nexthop {id}: a group inside a group"))),
                Some(NhKind::Unsupported(why)) => Err(NhError::Unsupported(format!("nexthop {id}: {why}"))),
            }
        };
        match self.objs.get(&id) {
            Some(NhKind::Group(members)) => {
                let mut hops = Vec::with_capacity(members.len());
                for (m, _) in members {
                    match hop(*m)? {
                        Some(h) => hops.push(h),
                        None => return Err(NhError::Unsupported(format!("nexthop group {id}: a blackhole member"))),
                    }
                }
                if hops.is_empty() {
                    return Err(NhError::Unsupported(format!("nexthop group {id} is empty")));
                }
                Ok(KKind::Unicast(hops))
            }
            _ => Ok(match hop(id)? {
                Some(h) => KKind::Unicast(vec![h]),
                None => KKind::Blackhole,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkMessage;

    /// A nexthop message as the kernel sends it (`ip nexthop add`).
    pub(crate) fn wire(kind: u16, family: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![family, 0, 4, 0, 0, 0, 0, 0];
        for (t, v) in attrs {
            let len = 4 + v.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            body.resize((body.len() + 3) & !3, 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    fn parse(b: &[u8]) -> Result<NhNetlinkMessage, String> {
        NetlinkMessage::<NhNetlinkMessage>::deserialize(b).map_err(|e| e.to_string()).and_then(|m| match m.payload {
            netlink_packet_core::NetlinkPayload::InnerMessage(x) => Ok(x),
            other => Err(format!("{other:?}")),
        })
    }

    fn grp(members: &[(u32, u8)]) -> Vec<u8> {
        members.iter().flat_map(|(id, w)| id.to_ne_bytes().into_iter().chain([*w - 1, 0, 0, 0])).collect()
    }

    #[test]
    fn hops_groups_and_blackholes_parse_from_the_wire() {
        let id = |n: u32| (NHA_ID, n.to_ne_bytes().to_vec());
        let v4 = libc::AF_INET as u8;
        let m = parse(&wire(
            RTM_NEWNEXTHOP,
            v4,
            &[id(5), (NHA_GATEWAY, vec![10, 0, 2, 2]), (NHA_OIF, 7u32.to_ne_bytes().to_vec())],
        ))
        .unwrap();
        let hop = NhKind::Hop { gateway: Some("10.0.2.2".parse().unwrap()), oif: 7 };
        assert_eq!(m, NhNetlinkMessage::New(NhMessage { id: 5, kind: hop }));
        let v6gw: Ipv6Addr = "fe80::2".parse().unwrap();
        let m = parse(&wire(RTM_NEWNEXTHOP, libc::AF_INET6 as u8, &[id(6), (NHA_GATEWAY, v6gw.octets().to_vec())]))
            .unwrap();
        assert_eq!(
            m,
            NhNetlinkMessage::New(NhMessage { id: 6, kind: NhKind::Hop { gateway: Some(v6gw.into()), oif: 0 } })
        );
        let m = parse(&wire(RTM_NEWNEXTHOP, 0, &[id(7), (NHA_GROUP, grp(&[(5, 1), (6, 3)]))])).unwrap();
        assert_eq!(m, NhNetlinkMessage::New(NhMessage { id: 7, kind: NhKind::Group(vec![(5, 1), (6, 3)]) }));
        let m = parse(&wire(RTM_DELNEXTHOP, v4, &[id(8), (NHA_BLACKHOLE, vec![])])).unwrap();
        assert_eq!(m, NhNetlinkMessage::Del(NhMessage { id: 8, kind: NhKind::Blackhole }));
        let m = parse(&wire(RTM_NEWNEXTHOP, v4, &[id(9), (NHA_ENCAP_TYPE, 1u16.to_ne_bytes().to_vec())])).unwrap();
        assert!(matches!(m, NhNetlinkMessage::New(NhMessage { kind: NhKind::Unsupported(_), .. })));
    }

    #[test]
    fn malformed_nexthop_messages_are_errors_not_panics() {
        let v4 = libc::AF_INET as u8;
        // No id; a 3-byte IPv4 gateway; a group not a multiple of 8; a
        // body shorter than nhmsg; an attribute longer than the message.
        assert!(parse(&wire(RTM_NEWNEXTHOP, v4, &[(NHA_GATEWAY, vec![10, 0, 2, 2])])).unwrap_err().contains("NHA_ID"));
        let id = (NHA_ID, 5u32.to_ne_bytes().to_vec());
        assert!(parse(&wire(RTM_NEWNEXTHOP, v4, &[id.clone(), (NHA_GATEWAY, vec![10, 0, 2])])).is_err());
        assert!(parse(&wire(RTM_NEWNEXTHOP, v4, &[id.clone(), (NHA_GROUP, vec![1, 2, 3])])).is_err());
        assert!(parse(&wire(RTM_NEWNEXTHOP, v4, &[(NHA_ID, vec![1, 2])])).is_err());
        let mut short = wire(RTM_NEWNEXTHOP, v4, &[]);
        short.truncate(20);
        short[..4].copy_from_slice(&20u32.to_ne_bytes());
        assert!(parse(&short).is_err());
        let mut long = wire(RTM_NEWNEXTHOP, v4, &[id]);
        long[24..26].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse(&long).is_err());
        // Every truncation of a good message: an error or a message, never a panic.
        let good =
            wire(RTM_NEWNEXTHOP, 0, &[(NHA_ID, 7u32.to_ne_bytes().to_vec()), (NHA_GROUP, grp(&[(5, 1), (6, 1)]))]);
        for n in 0..good.len() {
            let mut b = good[..n].to_vec();
            if b.len() >= 4 {
                b[..4].copy_from_slice(&(n as u32).to_ne_bytes());
            }
            let _ = parse(&b);
        }
    }

    #[test]
    fn the_dump_request_is_an_empty_nhmsg() {
        let w = dump_request(3);
        assert_eq!(w.len(), 24);
        assert_eq!(u16::from_ne_bytes([w[4], w[5]]), RTM_GETNEXTHOP);
        assert_eq!(u16::from_ne_bytes([w[6], w[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert!(w[16..].iter().all(|b| *b == 0));
    }

    fn hop(gw: &str, oif: u32) -> NhKind {
        NhKind::Hop { gateway: Some(gw.parse().unwrap()), oif }
    }

    #[test]
    fn groups_resolve_to_multipath_and_follow_their_members() {
        let mut c = NhCache::default();
        assert_eq!(c.insert(NhMessage { id: 5, kind: hop("10.0.2.2", 3) }), NhChange::default());
        c.insert(NhMessage { id: 6, kind: hop("10.0.3.2", 4) });
        c.insert(NhMessage { id: 7, kind: NhKind::Group(vec![(5, 1), (6, 1)]) });
        c.insert(NhMessage { id: 8, kind: NhKind::Blackhole });
        let k = |gw: [u8; 4], oif| KHop { gateway: Some(Ipv4Addr::from(gw)), oif };
        assert_eq!(c.resolve::<Ipv4Addr>(7), Ok(KKind::Unicast(vec![k([10, 0, 2, 2], 3), k([10, 0, 3, 2], 4)])));
        assert_eq!(c.resolve::<Ipv4Addr>(8), Ok(KKind::Blackhole));
        assert_eq!(c.resolve::<Ipv4Addr>(99), Err(NhError::Unknown(99)));
        assert!(c.resolve::<Ipv6Addr>(5).unwrap_err().to_string().contains("another family"));
        // The same again changes nothing; a replaced member changes its
        // groups.
        assert_eq!(c.insert(NhMessage { id: 5, kind: hop("10.0.2.2", 3) }), NhChange::default());
        let ch = c.insert(NhMessage { id: 5, kind: hop("10.0.2.9", 3) });
        assert_eq!(ch.changed, BTreeSet::from([5, 7]));
        // A member deleted: the group shrinks; the last one: the group goes.
        let ch = c.remove(6);
        assert_eq!((ch.deleted, ch.changed), (BTreeSet::from([6]), BTreeSet::from([7])));
        assert_eq!(c.resolve::<Ipv4Addr>(7), Ok(KKind::Unicast(vec![k([10, 0, 2, 9], 3)])));
        let ch = c.remove(5);
        assert_eq!(ch.deleted, BTreeSet::from([5, 7]));
        assert_eq!(c.len(), 1);
        assert_eq!(c.remove(5), NhChange::default());
        // A resync's dump against the cache: 8 gone, 9 new, 10 changed
        // (and its group 11).
        c.insert(NhMessage { id: 10, kind: hop("10.0.2.2", 3) });
        c.insert(NhMessage { id: 11, kind: NhKind::Group(vec![(10, 1)]) });
        let mut fresh = NhCache::default();
        fresh.insert(NhMessage { id: 9, kind: hop("10.0.2.3", 3) });
        fresh.insert(NhMessage { id: 10, kind: hop("10.0.2.4", 3) });
        fresh.insert(NhMessage { id: 11, kind: NhKind::Group(vec![(10, 1)]) });
        let ch = c.replace_all(fresh);
        assert_eq!((ch.deleted, ch.changed), (BTreeSet::from([8]), BTreeSet::from([10, 11])));
        assert_eq!(c.len(), 3);
    }
}
