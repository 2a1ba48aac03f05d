//! rtnetlink route messages (RTM_NEWROUTE / RTM_DELROUTE, as
//! netlink-packet-route parses them) translated into what softnet's table
//! can hold, or a reason why not.
//!
//! What is kept: unicast routes with one next hop or several
//! (RTA_MULTIPATH: ECMP), blackhole, unreachable and prohibit routes (`B`,
//! `R`), the protocol, the metric (RTA_PRIORITY: the kernel keeps one route
//! per metric; the lowest is the one in use) and an RTA_METRICS MTU. What is
//! skipped without a word: other tables, the kernel's own routes for
//! interface addresses (protocol `kernel`: softnet makes its connected and
//! local routes itself), local/broadcast/anycast/multicast routes and
//! cloned (cache) entries. What cannot be represented is counted and
//! logged: throw and NAT routes, type-of-service routes, IPv6 source-
//! specific routes, encapsulations, an IPv4 route via an IPv6 next hop
//! (RTA_VIA), MPLS. A route that names a nexthop object (RTA_NH_ID: FRR's
//! zebra) is kept as `KKind::Object`, resolved through the nexthop cache
//! (nexthop.rs) when it is written into softnet's table; the gateway the
//! kernel adds beside the id in compat mode is not used.

use netlink_packet_core::{DecodeError, Emitable, NlasIterator, ParseableParametrized};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteLwEnCapType, RouteMessage, RouteMetric, RouteNextHop,
    RouteProtocol, RouteType,
};
use netlink_packet_route::AddressFamily;
use softnet_core::route::RouteAddr;
use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Linux's main table (RT_TABLE_MAIN).
pub const TABLE_MAIN: u32 = 254;

/// One next hop of a kernel route: a gateway, the kernel's outgoing
/// interface index (0: none given), or both.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KHop<A> {
    pub gateway: Option<A>,
    pub oif: u32,
}

/// What a kernel route does with a packet.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KKind<A> {
    /// Forwarded by one of these (several: ECMP).
    Unicast(Vec<KHop<A>>),
    /// Dropped silently (`B`).
    Blackhole,
    /// Refused with an ICMP error (unreachable, prohibit: `R`).
    Reject,
    /// Forwarded as nexthop object `id` says (RTA_NH_ID).
    Object(u32),
}

/// A kernel route of one family as softnet can hold it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KRoute<A> {
    pub dest: A,
    pub prefix_len: u8,
    /// RTA_PRIORITY: among routes to one prefix, the lowest is in use.
    pub metric: u32,
    /// rtm_protocol.
    pub proto: u8,
    pub kind: KKind<A>,
    /// RTAX_MTU, 0 when not given.
    pub mtu: u32,
}

/// An address family the sync mirrors: `Ipv4Addr` or `Ipv6Addr`.
pub trait Fam: RouteAddr {
    fn from_ip(a: &RouteAddress) -> Option<Self>;
    fn from_std(a: std::net::IpAddr) -> Option<Self>;
}

impl Fam for Ipv4Addr {
    fn from_ip(a: &RouteAddress) -> Option<Self> {
        match a {
            RouteAddress::Inet(v) => Some(*v),
            _ => None,
        }
    }
    fn from_std(a: std::net::IpAddr) -> Option<Self> {
        match a {
            std::net::IpAddr::V4(v) => Some(v),
            _ => None,
        }
    }
}

impl Fam for Ipv6Addr {
    fn from_ip(a: &RouteAddress) -> Option<Self> {
        match a {
            RouteAddress::Inet6(v) => Some(*v),
            _ => None,
        }
    }
    fn from_std(a: std::net::IpAddr) -> Option<Self> {
        match a {
            std::net::IpAddr::V6(v) => Some(v),
            _ => None,
        }
    }
}

/// A message translated.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Translated {
    V4(KRoute<Ipv4Addr>),
    V6(KRoute<Ipv6Addr>),
    /// Not for the sync (another table, the kernel's own, local ...).
    Skip,
    /// For the sync but not representable: counted and logged.
    Unsupported(String),
}

fn proto_number(p: RouteProtocol) -> u8 {
    u8::from(p)
}

/// RTA_ENCAP_TYPE (linux/rtnetlink.h): read before the other attributes,
/// as netlink-packet-route does, since RTA_ENCAP is parsed by it.
const RTA_ENCAP_TYPE: u16 = 21;

/// Translates a route message of kernel table `table`.
pub fn translate(m: &RouteMessage, table: u32) -> Translated {
    let attrs = m.attributes.iter().map(|a| Ok(Cow::Borrowed(a)));
    translate_attrs(&m.header, attrs, table, true).unwrap_or_else(|e| Translated::Unsupported(e.to_string()))
}

/// Translates a route message as the kernel sent it (the payload after
/// the netlink header), its attributes parsed one at a time by
/// netlink-packet-route and not gathered into a `RouteMessage`'s vector:
/// a notification costs no allocation unless it is kept. With
/// `keep_hops` false (a withdrawal: the mirror needs only the prefix and
/// the metric) a unicast route's next hops are checked as ever but not
/// kept. `Err`: the message does not parse (as `RouteMessage`'s parse
/// would refuse it).
pub fn translate_wire(payload: &[u8], table: u32, keep_hops: bool) -> Result<Translated, DecodeError> {
    let h = RouteHeader::parse(payload)?;
    let buf = payload.get(h.buffer_len()..).unwrap_or_default();
    let mut encap = RouteLwEnCapType::None;
    for nla in NlasIterator::new(buf).flatten() {
        if nla.kind() == RTA_ENCAP_TYPE {
            if let Ok(RouteAttribute::EncapType(v)) =
                RouteAttribute::parse_with_param(&nla, (h.address_family, h.kind, encap))
            {
                encap = v;
                break;
            }
        }
    }
    let attrs = NlasIterator::new(buf)
        .map(|nla| RouteAttribute::parse_with_param(&nla?, (h.address_family, h.kind, encap)).map(Cow::Owned));
    translate_attrs(&h, attrs, table, keep_hops)
}

/// A message's header and attributes translated; `Err` when an attribute
/// does not parse.
fn translate_attrs<'a>(
    h: &RouteHeader,
    attrs: impl Iterator<Item = Result<Cow<'a, RouteAttribute>, DecodeError>>,
    table: u32,
    keep_hops: bool,
) -> Result<Translated, DecodeError> {
    Ok(match h.address_family {
        AddressFamily::Inet => match translate_fam::<Ipv4Addr>(h, attrs, table, keep_hops)? {
            Ok(r) => Translated::V4(r),
            Err(t) => t,
        },
        AddressFamily::Inet6 => match translate_fam::<Ipv6Addr>(h, attrs, table, keep_hops)? {
            Ok(r) => Translated::V6(r),
            Err(t) => t,
        },
        _ => {
            // Not ours, but a message that does not parse is still bad.
            for a in attrs {
                a?;
            }
            Translated::Skip
        }
    })
}

/// One pass over the attributes; then the checks in their order: the
/// table (RTA_TABLE if present, for ids over 255, else the header's), the
/// kernel's own and cloned routes, the route type, the header's fields,
/// the first attribute softnet cannot hold.
fn translate_fam<'a, A: Fam>(
    h: &RouteHeader,
    attrs: impl Iterator<Item = Result<Cow<'a, RouteAttribute>, DecodeError>>,
    table: u32,
    keep_hops: bool,
) -> Result<Result<KRoute<A>, Translated>, DecodeError> {
    let mut rta_table = None;
    let mut dest = None;
    let mut metric = 0;
    let mut mtu = 0;
    let mut gateway = None;
    let mut oif = 0;
    let mut multipath: Option<Vec<KHop<A>>> = None;
    let mut nh_id = None;
    let mut refused: Option<String> = None;
    for a in attrs {
        let a = a?;
        let why = match &*a {
            RouteAttribute::Table(t) => {
                rta_table = Some(*t);
                None
            }
            RouteAttribute::Destination(d) => match A::from_ip(d) {
                Some(d) => {
                    dest = Some(d);
                    None
                }
                None => Some("destination of another family".to_string()),
            },
            RouteAttribute::Priority(p) => {
                metric = *p;
                None
            }
            RouteAttribute::Gateway(g) => match A::from_ip(g) {
                Some(g) => {
                    gateway = Some(g);
                    None
                }
                None => Some("gateway of another family".to_string()),
            },
            RouteAttribute::Oif(i) => {
                oif = *i;
                None
            }
            RouteAttribute::MultiPath(hops) => match hops.iter().map(hop_of::<A>).collect() {
                Ok(hops) => {
                    multipath = Some(hops);
                    None
                }
                Err(e) => Some(e),
            },
            RouteAttribute::Metrics(ms) => {
                for x in ms {
                    if let RouteMetric::Mtu(v) = x {
                        mtu = *v;
                    }
                }
                None
            }
            RouteAttribute::NhId(id) => {
                nh_id = Some(*id);
                None
            }
            RouteAttribute::Via(_) => Some("next hop of another family (RTA_VIA)".to_string()),
            RouteAttribute::EncapType(_) | RouteAttribute::Encap(_) => Some("encapsulation".to_string()),
            RouteAttribute::NewDestination(_) => Some("MPLS".to_string()),
            _ => None,
        };
        if refused.is_none() {
            refused = why;
        }
    }
    if rta_table.unwrap_or(u32::from(h.table)) != table {
        return Ok(Err(Translated::Skip));
    }
    if h.flags.contains(netlink_packet_route::route::RouteFlags::Cloned) || h.protocol == RouteProtocol::Kernel {
        return Ok(Err(Translated::Skip));
    }
    match h.kind {
        RouteType::Local | RouteType::Broadcast | RouteType::Anycast | RouteType::Multicast => {
            return Ok(Err(Translated::Skip))
        }
        RouteType::Unicast | RouteType::BlackHole | RouteType::Unreachable | RouteType::Prohibit => {}
        other => return Ok(Err(Translated::Unsupported(format!("route type {other:?}")))),
    }
    let unsupported = |why: String| Ok(Err(Translated::Unsupported(why)));
    if h.tos != 0 {
        return unsupported(format!("type-of-service route (tos {:#x})", h.tos));
    }
    if h.source_prefix_length != 0 {
        return unsupported("source-specific route".into());
    }
    if h.destination_prefix_length > A::MAX_LEN {
        return unsupported(format!("prefix length {}", h.destination_prefix_length));
    }
    if let Some(why) = refused {
        return unsupported(why);
    }
    let dest = match dest {
        Some(d) => d,
        None if h.destination_prefix_length == 0 => A::from_bits(A::ZERO_BITS),
        None => return unsupported("no destination".into()),
    };
    let kind = match h.kind {
        RouteType::BlackHole => KKind::Blackhole,
        RouteType::Unreachable | RouteType::Prohibit => KKind::Reject,
        _ if nh_id.is_some() => KKind::Object(nh_id.expect("checked")),
        _ => {
            let one = [KHop { gateway, oif }];
            let hops = multipath.as_deref().unwrap_or(&one);
            if hops.is_empty() {
                return unsupported("multipath route without next hops".into());
            }
            if let Some(h) = hops.iter().find(|h| h.gateway.is_none() && h.oif == 0) {
                return unsupported(format!("next hop without gateway or interface ({h:?})"));
            }
            match (keep_hops, multipath) {
                (false, _) => KKind::Unicast(Vec::new()),
                (true, Some(hops)) => KKind::Unicast(hops),
                (true, None) => KKind::Unicast(one.to_vec()),
            }
        }
    };
    let dest = A::from_bits(A::mask_bits(dest.to_bits(), h.destination_prefix_length));
    Ok(Ok(KRoute { dest, prefix_len: h.destination_prefix_length, metric, proto: proto_number(h.protocol), kind, mtu }))
}

fn hop_of<A: Fam>(n: &RouteNextHop) -> Result<KHop<A>, String> {
    let mut gateway = None;
    for a in &n.attributes {
        match a {
            RouteAttribute::Gateway(g) => gateway = Some(A::from_ip(g).ok_or("gateway of another family")?),
            RouteAttribute::Via(_) => return Err("next hop of another family (RTA_VIA)".into()),
            RouteAttribute::EncapType(_) | RouteAttribute::Encap(_) => return Err("encapsulation".into()),
            RouteAttribute::NewDestination(_) => return Err("MPLS".into()),
            _ => {}
        }
    }
    Ok(KHop { gateway, oif: n.interface_index })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_route::route::{RouteFlags as NlFlags, RouteScope};
    use std::net::IpAddr;

    /// A route message as the kernel sends it for `ip route add`.
    pub(crate) fn msg(
        family: AddressFamily,
        dest: Option<IpAddr>,
        len: u8,
        kind: RouteType,
        proto: RouteProtocol,
        attrs: Vec<RouteAttribute>,
    ) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.destination_prefix_length = len;
        m.header.table = 254;
        m.header.protocol = proto;
        m.header.scope = RouteScope::Universe;
        m.header.kind = kind;
        if let Some(d) = dest {
            m.attributes.push(RouteAttribute::Destination(d.into()));
        }
        m.attributes.push(RouteAttribute::Table(254));
        m.attributes.extend(attrs);
        m
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    pub(crate) fn hop(gw: IpAddr, oif: u32) -> RouteNextHop {
        let mut h = RouteNextHop::default();
        h.interface_index = oif;
        h.attributes.push(RouteAttribute::Gateway(gw.into()));
        h
    }

    #[test]
    fn a_unicast_route_via_a_gateway_keeps_protocol_metric_and_mtu() {
        let m = msg(
            AddressFamily::Inet,
            Some(IpAddr::V4(v4("10.9.0.0"))),
            16,
            RouteType::Unicast,
            RouteProtocol::Bird,
            vec![
                RouteAttribute::Gateway(IpAddr::V4(v4("10.0.2.2")).into()),
                RouteAttribute::Oif(7),
                RouteAttribute::Priority(32),
                RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]),
            ],
        );
        assert_eq!(
            translate(&m, TABLE_MAIN),
            Translated::V4(KRoute {
                dest: v4("10.9.0.0"),
                prefix_len: 16,
                metric: 32,
                proto: 12,
                kind: KKind::Unicast(vec![KHop { gateway: Some(v4("10.0.2.2")), oif: 7 }]),
                mtu: 1400,
            })
        );
        // Another table is not ours.
        assert_eq!(translate(&m, 100), Translated::Skip);
    }

    #[test]
    fn multipath_becomes_one_route_with_every_hop() {
        let m = msg(
            AddressFamily::Inet6,
            Some("2001:db8:9::".parse().unwrap()),
            48,
            RouteType::Unicast,
            RouteProtocol::Bgp,
            vec![RouteAttribute::MultiPath(vec![
                hop("fe80::1".parse().unwrap(), 3),
                hop("fe80::2".parse().unwrap(), 4),
            ])],
        );
        let Translated::V6(r) = translate(&m, TABLE_MAIN) else { panic!("{:?}", translate(&m, TABLE_MAIN)) };
        assert_eq!(r.proto, 186);
        assert_eq!(
            r.kind,
            KKind::Unicast(vec![
                KHop { gateway: Some("fe80::1".parse().unwrap()), oif: 3 },
                KHop { gateway: Some("fe80::2".parse().unwrap()), oif: 4 },
            ])
        );
    }

    #[test]
    fn blackhole_unreachable_and_prohibit_are_b_and_r_and_default_has_no_destination() {
        for (t, k) in [
            (RouteType::BlackHole, KKind::Blackhole),
            (RouteType::Unreachable, KKind::Reject),
            (RouteType::Prohibit, KKind::Reject),
        ] {
            let m = msg(AddressFamily::Inet, None, 0, t, RouteProtocol::Boot, vec![]);
            let Translated::V4(r) = translate(&m, TABLE_MAIN) else { panic!() };
            assert_eq!((r.dest, r.prefix_len, r.kind, r.proto), (Ipv4Addr::UNSPECIFIED, 0, k, 3));
        }
    }

    #[test]
    fn the_kernels_own_local_and_cloned_routes_are_skipped() {
        let dst = Some(IpAddr::V4(v4("10.0.2.0")));
        let conn = msg(AddressFamily::Inet, dst, 24, RouteType::Unicast, RouteProtocol::Kernel, vec![]);
        assert_eq!(translate(&conn, TABLE_MAIN), Translated::Skip);
        let local = msg(AddressFamily::Inet, dst, 32, RouteType::Local, RouteProtocol::Boot, vec![]);
        assert_eq!(translate(&local, TABLE_MAIN), Translated::Skip);
        let mut cloned =
            msg(AddressFamily::Inet, dst, 24, RouteType::Unicast, RouteProtocol::Boot, vec![RouteAttribute::Oif(2)]);
        cloned.header.flags = NlFlags::Cloned;
        assert_eq!(translate(&cloned, TABLE_MAIN), Translated::Skip);
    }

    #[test]
    fn a_route_naming_a_nexthop_object_keeps_the_id_not_the_compat_gateway() {
        let dst = Some(IpAddr::V4(v4("10.9.0.0")));
        // As zebra's routes come in compat mode: the id and the gateway.
        let attrs = vec![RouteAttribute::NhId(5), RouteAttribute::Gateway(IpAddr::V4(v4("10.0.2.2")).into())];
        let m = msg(AddressFamily::Inet, dst, 16, RouteType::Unicast, RouteProtocol::Bgp, attrs);
        let Translated::V4(r) = translate(&m, TABLE_MAIN) else { panic!("{:?}", translate(&m, TABLE_MAIN)) };
        assert_eq!((r.kind, r.proto), (KKind::Object(5), 186));
        // A blackhole nexthop object: the kernel marks the route blackhole.
        let m = msg(
            AddressFamily::Inet,
            dst,
            16,
            RouteType::BlackHole,
            RouteProtocol::Zebra,
            vec![RouteAttribute::NhId(6)],
        );
        let Translated::V4(r) = translate(&m, TABLE_MAIN) else { panic!() };
        assert_eq!(r.kind, KKind::Blackhole);
    }

    /// `translate_wire` against `translate` of the message netlink-packet-
    /// route parses (the reference): the same outcome for every kind of
    /// message above, a withdrawal's without its hops; what does not
    /// parse is an error on both.
    fn no_hops<A>(k: KKind<A>) -> KKind<A> {
        if let KKind::Unicast(_) = k {
            KKind::Unicast(Vec::new())
        } else {
            k
        }
    }

    #[test]
    fn a_message_read_from_the_wire_translates_as_the_parsed_one() {
        use netlink_packet_core::Parseable;
        let dst = Some(IpAddr::V4(v4("10.9.0.0")));
        let gw = RouteAttribute::Gateway(IpAddr::V4(v4("10.0.2.2")).into());
        let (inet, uni, boot) = (AddressFamily::Inet, RouteType::Unicast, RouteProtocol::Boot);
        let mut tos = msg(inet, dst, 16, uni, boot, vec![gw.clone()]);
        tos.header.tos = 0x10;
        let mut other_table = msg(inet, dst, 16, uni, boot, vec![gw.clone(), RouteAttribute::Table(1000)]);
        other_table.attributes.retain(|a| *a != RouteAttribute::Table(254));
        let cases = [
            msg(
                inet,
                dst,
                16,
                uni,
                RouteProtocol::Bird,
                vec![
                    gw.clone(),
                    RouteAttribute::Oif(7),
                    RouteAttribute::Priority(32),
                    RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]),
                ],
            ),
            msg(
                AddressFamily::Inet6,
                Some("2001:db8:9::".parse().unwrap()),
                48,
                uni,
                RouteProtocol::Bgp,
                vec![RouteAttribute::MultiPath(vec![
                    hop("fe80::1".parse().unwrap(), 3),
                    hop("fe80::2".parse().unwrap(), 4),
                ])],
            ),
            msg(inet, None, 0, RouteType::BlackHole, boot, vec![]),
            msg(inet, None, 0, RouteType::Prohibit, boot, vec![]),
            msg(inet, dst, 16, uni, RouteProtocol::Kernel, vec![]),
            msg(inet, dst, 32, RouteType::Local, boot, vec![]),
            msg(inet, dst, 16, uni, RouteProtocol::Bgp, vec![RouteAttribute::NhId(5), gw.clone()]),
            msg(inet, dst, 16, RouteType::Throw, boot, vec![]),
            msg(inet, dst, 16, uni, boot, vec![]),
            msg(inet, dst, 40, uni, boot, vec![gw.clone()]),
            msg(inet, dst, 16, uni, boot, vec![RouteAttribute::Gateway(IpAddr::V6("fe80::1".parse().unwrap()).into())]),
            tos,
            other_table,
        ];
        for m in &cases {
            let mut wire = vec![0; m.buffer_len()];
            m.emit(&mut wire);
            // What the sync did before: the crate's parse, then translate.
            let want = match RouteMessage::parse(&wire) {
                Ok(parsed) => translate(&parsed, TABLE_MAIN),
                Err(e) => {
                    assert!(translate_wire(&wire, TABLE_MAIN, true).is_err(), "{m:?}: {e}");
                    continue;
                }
            };
            assert_eq!(translate_wire(&wire, TABLE_MAIN, true).unwrap(), want, "{m:?}");
            let withdrawal = match want {
                Translated::V4(r) => Translated::V4(KRoute { kind: no_hops(r.kind), ..r }),
                Translated::V6(r) => Translated::V6(KRoute { kind: no_hops(r.kind), ..r }),
                other => other,
            };
            assert_eq!(translate_wire(&wire, TABLE_MAIN, false).unwrap(), withdrawal, "{m:?}");
            // An attribute cut short: neither parses.
            let cut = &wire[..wire.len() - 2];
            if let Ok(parsed) = RouteMessage::parse(cut) {
                panic!("the reference parsed a cut message: {parsed:?}");
            }
            assert!(translate_wire(cut, TABLE_MAIN, true).is_err(), "{m:?}");
        }
        assert!(translate_wire(&[2, 24], TABLE_MAIN, false).is_err(), "shorter than the header");
    }

    #[test]
    fn what_softnet_cannot_hold_is_unsupported_with_a_reason() {
        let dst = Some(IpAddr::V4(v4("10.5.0.0")));
        let gw = RouteAttribute::Gateway(IpAddr::V4(v4("10.0.2.2")).into());
        let cases = [
            (msg(AddressFamily::Inet, dst, 16, RouteType::Throw, RouteProtocol::Boot, vec![]), "Throw"),
            (msg(AddressFamily::Inet, dst, 16, RouteType::Unicast, RouteProtocol::Boot, vec![]), "without gateway"),
            (
                {
                    let mut m =
                        msg(AddressFamily::Inet, dst, 16, RouteType::Unicast, RouteProtocol::Boot, vec![gw.clone()]);
                    m.header.tos = 0x10;
                    m
                },
                "type-of-service",
            ),
            (msg(AddressFamily::Inet, dst, 40, RouteType::Unicast, RouteProtocol::Boot, vec![gw]), "prefix length"),
        ];
        for (m, why) in cases {
            match translate(&m, TABLE_MAIN) {
                Translated::Unsupported(e) => assert!(e.contains(why), "{e} / {why}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }
}
