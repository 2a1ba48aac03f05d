//! Neighbor Discovery (RFC 4861): router solicitation / advertisement,
//! neighbor solicitation / advertisement, redirect, and their options.
//!
//! An [`NdpRepr`] holds a message's fixed fields and its options area
//! (framing checked at parse: no zero length, nothing past the end, RFC
//! 4861 §6.1, §7.1). Read options with [`NdpRepr::options`] or the
//! helpers; build them with [`NdpOption::emit`] / [`emit_options`] into a
//! buffer on the stack and hand the bytes to the Repr.

use std::net::Ipv6Addr;

use crate::ethernet::MacAddr;
use crate::icmpv6::{msg_type, Icmpv6Packet};
use crate::ipv6::Ipv6AddrExt;
use crate::{get16, get32, put16, put32, WireError};

/// The hop limit every NDP message is sent with and must arrive with
/// (RFC 4861 §6.1, §7.1, §8.1): proof it did not cross a router.
pub const HOP_LIMIT: u8 = 255;

/// Option types (RFC 4861 §4.6).
pub mod option_kind {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const REDIRECTED_HEADER: u8 = 4;
    pub const MTU: u8 = 5;
    /// Nonce (RFC 3971 §5.3.2), used by DAD to spot its own looped-back
    /// solicitations (RFC 7527).
    pub const NONCE: u8 = 14;
    /// Recursive DNS servers (RFC 8106 §5.1).
    pub const RDNSS: u8 = 25;
    /// DNS search list (RFC 8106 §5.2).
    pub const DNSSL: u8 = 31;
}

mod field {
    // Router advertisement.
    pub const CUR_HOP_LIMIT: usize = 4;
    pub const RA_FLAGS: usize = 5;
    pub const ROUTER_LIFETIME: usize = 6;
    pub const REACHABLE_TIME: usize = 8;
    pub const RETRANS_TIMER: usize = 12;
    // Neighbor advertisement.
    pub const NA_FLAGS: usize = 4;
    // Neighbor solicitation / advertisement, redirect.
    pub const TARGET: usize = 8;
    pub const DEST: usize = 24;
}

const RA_MANAGED: u8 = 0x80;
const RA_OTHER: u8 = 0x40;
const RA_PRF_SHIFT: u8 = 3;
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;
const PI_ON_LINK: u8 = 0x80;
const PI_AUTONOMOUS: u8 = 0x40;

/// Where the options start, per message type.
fn options_offset(t: u8) -> Option<usize> {
    Some(match t {
        msg_type::ROUTER_SOLICIT => 8,
        msg_type::ROUTER_ADVERT => 16,
        msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => 24,
        msg_type::REDIRECT => 40,
        _ => return None,
    })
}

fn get_ip6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// Prefix information (RFC 4861 §4.6.2): what rad(8) advertises and SLAAC
/// (RFC 4862 §5.5.3) consumes. Lifetimes are seconds, 0xffffffff infinite.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: usable for stateless address autoconfiguration.
    pub autonomous: bool,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// An NDP option.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum NdpOption<'a> {
    /// Source link-layer address (Ethernet: length 1).
    SourceLinkAddr(MacAddr),
    /// Target link-layer address (Ethernet: length 1).
    TargetLinkAddr(MacAddr),
    PrefixInfo(PrefixInfo),
    /// The redirected packet's leading bytes (padding included on parse;
    /// padded with zeros to 8 on emit).
    RedirectedHeader(&'a [u8]),
    Mtu(u32),
    /// The nonce bytes (6 + 8k).
    Nonce(&'a [u8]),
    /// DNS servers, 16 bytes each; lifetime in seconds.
    Rdnss {
        lifetime: u32,
        servers: &'a [u8],
    },
    /// DNS search list in DNS name encoding, zero padded; lifetime in seconds.
    Dnssl {
        lifetime: u32,
        domains: &'a [u8],
    },
    /// Any other type: the bytes after type and length (8k − 2 bytes on
    /// parse; padded with zeros on emit).
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// What is wrong with an option.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum NdpOptionErrorKind {
    /// Length 0: the whole message is invalid (RFC 4861 §4.6).
    ZeroLength,
    /// The option's length runs past the message, or the length byte is
    /// missing.
    Truncated,
    /// A known option with the wrong length (a link-layer address that is
    /// not 6 bytes, prefix information not 32, MTU not 8, RDNSS not 8 + 16n
    /// with n ≥ 1, DNSSL under 16).
    BadLength,
}

/// A bad option; `offset` is its type byte, from the start of the ICMPv6
/// message.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("bad NDP option ({kind:?}) at offset {offset}")]
pub struct NdpOptionError {
    pub kind: NdpOptionErrorKind,
    pub offset: usize,
}

impl From<NdpOptionError> for WireError {
    fn from(e: NdpOptionError) -> WireError {
        match e.kind {
            NdpOptionErrorKind::Truncated => WireError::Truncated,
            _ => WireError::Malformed,
        }
    }
}

/// Iterates over an options area whose first byte is at message offset
/// `base`. One error, then nothing, on bad framing; a known option with a
/// bad length yields an error and the walk goes on (nd6.c ignores such a
/// prefix option but drops a message with a bad link-layer address).
pub fn options(opts: &[u8], base: usize) -> NdpOptions<'_> {
    NdpOptions { opts, pos: 0, base, done: false }
}

/// Iterator returned by [`options`].
#[derive(Debug, Clone)]
pub struct NdpOptions<'a> {
    opts: &'a [u8],
    pos: usize,
    base: usize,
    done: bool,
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>, NdpOptionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.opts.len() {
            return None;
        }
        let at = self.pos;
        let err = |kind| NdpOptionError { kind, offset: self.base + at };
        let rest = &self.opts[at..];
        let Some(&units) = rest.get(1) else {
            self.done = true;
            return Some(Err(err(NdpOptionErrorKind::Truncated)));
        };
        let len = units as usize * 8;
        if len == 0 {
            self.done = true;
            return Some(Err(err(NdpOptionErrorKind::ZeroLength)));
        }
        if len > rest.len() {
            self.done = true;
            return Some(Err(err(NdpOptionErrorKind::Truncated)));
        }
        self.pos += len;
        let o = &rest[..len];
        let mac = || MacAddr([o[2], o[3], o[4], o[5], o[6], o[7]]);
        let bad = Some(Err(err(NdpOptionErrorKind::BadLength)));
        Some(Ok(match o[0] {
            option_kind::SOURCE_LLADDR if len == 8 => NdpOption::SourceLinkAddr(mac()),
            option_kind::TARGET_LLADDR if len == 8 => NdpOption::TargetLinkAddr(mac()),
            option_kind::PREFIX_INFO if len == 32 => NdpOption::PrefixInfo(PrefixInfo {
                prefix_len: o[2],
                on_link: o[3] & PI_ON_LINK != 0,
                autonomous: o[3] & PI_AUTONOMOUS != 0,
                valid_lifetime: get32(o, 4),
                preferred_lifetime: get32(o, 8),
                prefix: get_ip6(o, 16),
            }),
            option_kind::MTU if len == 8 => NdpOption::Mtu(get32(o, 4)),
            option_kind::RDNSS if len >= 24 && units % 2 == 1 => {
                NdpOption::Rdnss { lifetime: get32(o, 4), servers: &o[8..] }
            }
            option_kind::DNSSL if len >= 16 => NdpOption::Dnssl { lifetime: get32(o, 4), domains: &o[8..] },
            option_kind::SOURCE_LLADDR
            | option_kind::TARGET_LLADDR
            | option_kind::PREFIX_INFO
            | option_kind::MTU
            | option_kind::RDNSS
            | option_kind::DNSSL => return bad,
            option_kind::NONCE => NdpOption::Nonce(&o[2..]),
            option_kind::REDIRECTED_HEADER => NdpOption::RedirectedHeader(&o[8..]),
            kind => NdpOption::Unknown { kind, data: &o[2..] },
        }))
    }
}

/// Checks the framing of an options area (zero lengths, lengths past the
/// end); known options' lengths are left to the reader.
pub fn check_framing(opts: &[u8], base: usize) -> Result<(), NdpOptionError> {
    for o in options(opts, base) {
        match o {
            Err(e) if e.kind != NdpOptionErrorKind::BadLength => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

impl NdpOption<'_> {
    /// Bytes [`emit`](Self::emit) writes: a multiple of 8.
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOption::SourceLinkAddr(_) | NdpOption::TargetLinkAddr(_) | NdpOption::Mtu(_) => 8,
            NdpOption::PrefixInfo(_) => 32,
            NdpOption::RedirectedHeader(d) => 8 + d.len().div_ceil(8) * 8,
            NdpOption::Rdnss { servers, .. } => 8 + servers.len().div_ceil(16) * 16,
            NdpOption::Dnssl { domains, .. } => 8 + domains.len().div_ceil(8) * 8,
            NdpOption::Nonce(data) | NdpOption::Unknown { data, .. } => (2 + data.len()).div_ceil(8) * 8,
        }
    }

    /// Writes the option at the start of `buf`; returns its length. Panics
    /// if `buf` is too short or the option is over 2040 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        assert!(len <= 255 * 8, "NDP option over 2040 bytes");
        let o = &mut buf[..len];
        o.fill(0);
        o[1] = (len / 8) as u8;
        match *self {
            NdpOption::SourceLinkAddr(m) | NdpOption::TargetLinkAddr(m) => {
                o[0] = if matches!(self, NdpOption::SourceLinkAddr(_)) {
                    option_kind::SOURCE_LLADDR
                } else {
                    option_kind::TARGET_LLADDR
                };
                o[2..8].copy_from_slice(&m.octets());
            }
            NdpOption::PrefixInfo(p) => {
                o[0] = option_kind::PREFIX_INFO;
                o[2] = p.prefix_len;
                o[3] = if p.on_link { PI_ON_LINK } else { 0 } | if p.autonomous { PI_AUTONOMOUS } else { 0 };
                put32(o, 4, p.valid_lifetime);
                put32(o, 8, p.preferred_lifetime);
                o[16..32].copy_from_slice(&p.prefix.octets());
            }
            NdpOption::RedirectedHeader(d) => {
                o[0] = option_kind::REDIRECTED_HEADER;
                o[8..8 + d.len()].copy_from_slice(d);
            }
            NdpOption::Mtu(m) => {
                o[0] = option_kind::MTU;
                put32(o, 4, m);
            }
            NdpOption::Nonce(data) => {
                o[0] = option_kind::NONCE;
                o[2..2 + data.len()].copy_from_slice(data);
            }
            NdpOption::Rdnss { lifetime, servers } => {
                o[0] = option_kind::RDNSS;
                put32(o, 4, lifetime);
                o[8..8 + servers.len()].copy_from_slice(servers);
            }
            NdpOption::Dnssl { lifetime, domains } => {
                o[0] = option_kind::DNSSL;
                put32(o, 4, lifetime);
                o[8..8 + domains.len()].copy_from_slice(domains);
            }
            NdpOption::Unknown { kind, data } => {
                o[0] = kind;
                o[2..2 + data.len()].copy_from_slice(data);
            }
        }
        len
    }
}

/// Writes `opts` one after another; returns the bytes written.
pub fn emit_options(opts: &[NdpOption<'_>], buf: &mut [u8]) -> usize {
    let mut at = 0;
    for o in opts {
        at += o.emit(&mut buf[at..]);
    }
    at
}

/// Default router preference (RFC 4191 §2.2), the RA's Prf bits.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, Default)]
pub enum RouterPreference {
    #[default]
    Medium,
    High,
    Low,
    /// 10: must not be sent; a receiver treats it as medium.
    Reserved,
}

impl RouterPreference {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => RouterPreference::Medium,
            1 => RouterPreference::High,
            3 => RouterPreference::Low,
            _ => RouterPreference::Reserved,
        }
    }

    fn bits(self) -> u8 {
        match self {
            RouterPreference::Medium => 0,
            RouterPreference::High => 1,
            RouterPreference::Low => 3,
            RouterPreference::Reserved => 2,
        }
    }
}

/// Neighbor advertisement flags (RFC 4861 §4.4).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct NaFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in response to a solicitation.
    pub solicited: bool,
    /// O: override an existing cache entry.
    pub override_: bool,
}

/// An NDP message. `options` is the raw options area.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum NdpRepr<'a> {
    RouterSolicit {
        options: &'a [u8],
    },
    RouterAdvert {
        /// Cur hop limit for hosts (0: unspecified).
        hop_limit: u8,
        /// M: addresses via DHCPv6.
        managed: bool,
        /// O: other configuration via DHCPv6.
        other: bool,
        /// Prf (RFC 4191).
        preference: RouterPreference,
        /// Seconds; 0: not a default router.
        router_lifetime: u16,
        /// Milliseconds; 0: unspecified.
        reachable_time: u32,
        /// Milliseconds; 0: unspecified.
        retrans_timer: u32,
        options: &'a [u8],
    },
    NeighborSolicit {
        target: Ipv6Addr,
        options: &'a [u8],
    },
    NeighborAdvert {
        flags: NaFlags,
        target: Ipv6Addr,
        options: &'a [u8],
    },
    Redirect {
        /// The better first hop (or `dest` itself when it is on-link).
        target: Ipv6Addr,
        dest: Ipv6Addr,
        options: &'a [u8],
    },
}

/// Why an NDP message must be dropped (RFC 4861 §6.1.1, §6.1.2, §7.1.1,
/// §7.1.2, §8.1 validity checks that need the IPv6 header).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NdpInvalid {
    #[error("hop limit is not 255")]
    HopLimit,
    #[error("source is not link-local")]
    SourceNotLinkLocal,
    #[error("target is multicast")]
    TargetMulticast,
    #[error("unspecified source with a source link-layer address option")]
    UnspecifiedSourceWithLladdr,
    #[error("unspecified source not to a solicited-node address")]
    UnspecifiedSourceNotSolicitedNode,
    #[error("solicited advertisement to a multicast address")]
    SolicitedToMulticast,
    #[error("redirect destination is multicast")]
    RedirectDestMulticast,
    #[error("redirect target is neither link-local nor the destination")]
    RedirectTarget,
    #[error("link-layer address option with a bad length")]
    BadLladdr,
}

impl<'a> NdpRepr<'a> {
    /// Parses an NDP message (types 133..=137; checksum verified by
    /// [`Icmpv6Repr::parse`](crate::icmpv6::Icmpv6Repr::parse)). Code not
    /// 0 or an option of length 0 is `Malformed`; a short body or an option
    /// past the end is `Truncated`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Icmpv6Packet<&'a T>) -> Result<Self, WireError> {
        let b: &'a [u8] = T::as_ref(p.buf);
        let t = p.msg_type();
        let off = options_offset(t).ok_or(WireError::Unsupported)?;
        if p.code() != 0 {
            return Err(WireError::Malformed);
        }
        if b.len() < off {
            return Err(WireError::Truncated);
        }
        let options = &b[off..];
        check_framing(options, off)?;
        Ok(match t {
            msg_type::ROUTER_SOLICIT => NdpRepr::RouterSolicit { options },
            msg_type::ROUTER_ADVERT => NdpRepr::RouterAdvert {
                hop_limit: b[field::CUR_HOP_LIMIT],
                managed: b[field::RA_FLAGS] & RA_MANAGED != 0,
                other: b[field::RA_FLAGS] & RA_OTHER != 0,
                preference: RouterPreference::from_bits(b[field::RA_FLAGS] >> RA_PRF_SHIFT),
                router_lifetime: get16(b, field::ROUTER_LIFETIME),
                reachable_time: get32(b, field::REACHABLE_TIME),
                retrans_timer: get32(b, field::RETRANS_TIMER),
                options,
            },
            msg_type::NEIGHBOR_SOLICIT => NdpRepr::NeighborSolicit { target: get_ip6(b, field::TARGET), options },
            msg_type::NEIGHBOR_ADVERT => NdpRepr::NeighborAdvert {
                flags: NaFlags {
                    router: b[field::NA_FLAGS] & NA_ROUTER != 0,
                    solicited: b[field::NA_FLAGS] & NA_SOLICITED != 0,
                    override_: b[field::NA_FLAGS] & NA_OVERRIDE != 0,
                },
                target: get_ip6(b, field::TARGET),
                options,
            },
            _ => NdpRepr::Redirect { target: get_ip6(b, field::TARGET), dest: get_ip6(b, field::DEST), options },
        })
    }

    pub fn msg_type(&self) -> u8 {
        match self {
            NdpRepr::RouterSolicit { .. } => msg_type::ROUTER_SOLICIT,
            NdpRepr::RouterAdvert { .. } => msg_type::ROUTER_ADVERT,
            NdpRepr::NeighborSolicit { .. } => msg_type::NEIGHBOR_SOLICIT,
            NdpRepr::NeighborAdvert { .. } => msg_type::NEIGHBOR_ADVERT,
            NdpRepr::Redirect { .. } => msg_type::REDIRECT,
        }
    }

    /// The options area.
    pub fn options_bytes(&self) -> &'a [u8] {
        match *self {
            NdpRepr::RouterSolicit { options }
            | NdpRepr::RouterAdvert { options, .. }
            | NdpRepr::NeighborSolicit { options, .. }
            | NdpRepr::NeighborAdvert { options, .. }
            | NdpRepr::Redirect { options, .. } => options,
        }
    }

    fn options_offset(&self) -> usize {
        options_offset(self.msg_type()).expect("an NDP type")
    }

    /// The options, with offsets from the start of the message.
    pub fn options(&self) -> NdpOptions<'a> {
        options(self.options_bytes(), self.options_offset())
    }

    /// The link-layer address the message carries about its sender (source
    /// option in RS, RA, NS) or its target (target option in NA and
    /// redirect). A link-layer option of the wrong length is an error, as
    /// nd6.c drops such a message ("lladdrlen mismatch").
    pub fn lladdr(&self) -> Result<Option<MacAddr>, NdpInvalid> {
        let want = match self {
            NdpRepr::NeighborAdvert { .. } | NdpRepr::Redirect { .. } => option_kind::TARGET_LLADDR,
            _ => option_kind::SOURCE_LLADDR,
        };
        let mut found = None;
        for o in self.options() {
            match o {
                Ok(NdpOption::SourceLinkAddr(m)) if want == option_kind::SOURCE_LLADDR => found = Some(m),
                Ok(NdpOption::TargetLinkAddr(m)) if want == option_kind::TARGET_LLADDR => found = Some(m),
                Err(e) if self.options_bytes().get(e.offset - self.options_offset()) == Some(&want) => {
                    return Err(NdpInvalid::BadLladdr)
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// The MTU option, if any.
    pub fn mtu(&self) -> Option<u32> {
        self.options().find_map(|o| match o {
            Ok(NdpOption::Mtu(m)) => Some(m),
            _ => None,
        })
    }

    /// The well-formed prefix information options (bad-length ones are
    /// skipped, as nd6_ra_input does).
    pub fn prefixes(&self) -> impl Iterator<Item = PrefixInfo> + 'a {
        self.options().filter_map(|o| match o {
            Ok(NdpOption::PrefixInfo(p)) => Some(p),
            _ => None,
        })
    }

    /// The redirected header option's bytes, if any.
    pub fn redirected_header(&self) -> Option<&'a [u8]> {
        self.options().find_map(|o| match o {
            Ok(NdpOption::RedirectedHeader(d)) => Some(d),
            _ => None,
        })
    }

    /// The RFC 4861 validity checks that need the IPv6 header: hop limit
    /// 255 for all; RA and redirect from a link-local source; NS / NA
    /// targets not multicast; an NS from :: goes to a solicited-node group
    /// without a source link-layer option (DAD); a solicited NA is not sent
    /// to multicast; a redirect's destination is unicast and its target
    /// link-local or the destination. Link-layer options must be 6 bytes.
    pub fn validate(&self, src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Result<(), NdpInvalid> {
        if hop_limit != HOP_LIMIT {
            return Err(NdpInvalid::HopLimit);
        }
        let lladdr = self.lladdr()?;
        match *self {
            NdpRepr::RouterSolicit { .. } => {
                if src.is_unspecified() && lladdr.is_some() {
                    return Err(NdpInvalid::UnspecifiedSourceWithLladdr);
                }
            }
            NdpRepr::RouterAdvert { .. } => {
                if !src.is_link_local_unicast() {
                    return Err(NdpInvalid::SourceNotLinkLocal);
                }
            }
            NdpRepr::NeighborSolicit { target, .. } => {
                if target.is_multicast() {
                    return Err(NdpInvalid::TargetMulticast);
                }
                if src.is_unspecified() {
                    if !dst.is_solicited_node() {
                        return Err(NdpInvalid::UnspecifiedSourceNotSolicitedNode);
                    }
                    if lladdr.is_some() {
                        return Err(NdpInvalid::UnspecifiedSourceWithLladdr);
                    }
                }
            }
            NdpRepr::NeighborAdvert { flags, target, .. } => {
                if target.is_multicast() {
                    return Err(NdpInvalid::TargetMulticast);
                }
                if flags.solicited && dst.is_multicast() {
                    return Err(NdpInvalid::SolicitedToMulticast);
                }
            }
            NdpRepr::Redirect { target, dest, .. } => {
                if !src.is_link_local_unicast() {
                    return Err(NdpInvalid::SourceNotLinkLocal);
                }
                if dest.is_multicast() {
                    return Err(NdpInvalid::RedirectDestMulticast);
                }
                if !target.is_link_local_unicast() && target != dest {
                    return Err(NdpInvalid::RedirectTarget);
                }
            }
        }
        Ok(())
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        self.options_offset() + self.options_bytes().len()
    }

    /// Writes the message (type, code 0, checksum 0, fields, options) at
    /// the start of `buf`; the ICMPv6 Repr fills the checksum. Panics if
    /// `buf` is shorter than `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8]) {
        let off = self.options_offset();
        let b = &mut buf[..self.buffer_len()];
        b[..off].fill(0);
        b[0] = self.msg_type();
        match *self {
            NdpRepr::RouterSolicit { .. } => {}
            NdpRepr::RouterAdvert {
                hop_limit,
                managed,
                other,
                preference,
                router_lifetime,
                reachable_time,
                retrans_timer,
                ..
            } => {
                b[field::CUR_HOP_LIMIT] = hop_limit;
                b[field::RA_FLAGS] = if managed { RA_MANAGED } else { 0 }
                    | if other { RA_OTHER } else { 0 }
                    | preference.bits() << RA_PRF_SHIFT;
                put16(b, field::ROUTER_LIFETIME, router_lifetime);
                put32(b, field::REACHABLE_TIME, reachable_time);
                put32(b, field::RETRANS_TIMER, retrans_timer);
            }
            NdpRepr::NeighborSolicit { target, .. } => {
                b[field::TARGET..field::TARGET + 16].copy_from_slice(&target.octets())
            }
            NdpRepr::NeighborAdvert { flags, target, .. } => {
                b[field::NA_FLAGS] = if flags.router { NA_ROUTER } else { 0 }
                    | if flags.solicited { NA_SOLICITED } else { 0 }
                    | if flags.override_ { NA_OVERRIDE } else { 0 };
                b[field::TARGET..field::TARGET + 16].copy_from_slice(&target.octets());
            }
            NdpRepr::Redirect { target, dest, .. } => {
                b[field::TARGET..field::TARGET + 16].copy_from_slice(&target.octets());
                b[field::DEST..field::DEST + 16].copy_from_slice(&dest.octets());
            }
        }
        b[off..].copy_from_slice(self.options_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icmpv6::tests::{a, icmp_of};
    use crate::icmpv6::Icmpv6Repr;
    use crate::ipv6::{self, Ipv6Packet};
    use proptest::prelude::*;

    fn parse_ndp<'a>(s: Ipv6Addr, d: Ipv6Addr, m: &'a [u8]) -> Result<NdpRepr<'a>, WireError> {
        match Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(m).unwrap())? {
            Icmpv6Repr::Ndp(n) => Ok(n),
            r => panic!("not NDP: {r:?}"),
        }
    }

    fn emit_icmp(r: NdpRepr, s: Ipv6Addr, d: Ipv6Addr) -> Vec<u8> {
        let i = Icmpv6Repr::Ndp(r);
        let mut b = vec![0u8; i.buffer_len()];
        i.emit(s, d, &mut b);
        b
    }

    /// Linux 6.x: fd00::a (02:00:00:00:00:0a) asks for fd00::b.
    const LINUX_NS: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xff, 0x00, 0x00, 0x0b, 0x87, 0x00, 0x7d, 0x73, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,
    ];
    /// Linux 6.x (a router: forwarding on): fd00::b answers with R, S, O.
    const LINUX_NA: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x0a, 0x88, 0x00, 0x9c, 0x75, 0xe0, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,
    ];
    /// Linux 6.x DAD for its link-local address: from ::, a nonce option
    /// (type 14, RFC 7527) and no source link-layer address.
    const LINUX_DAD_NS: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xff, 0x00, 0x00, 0x0a, 0x87, 0x00, 0xc7, 0x49, 0x00, 0x00, 0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x0a, 0x0e, 0x01, 0xe8, 0xa3, 0x07, 0x46, 0xb7, 0xd6,
    ];
    /// Linux 6.x router solicitation from fe80::ff:fe00:a.
    const LINUX_RS: [u8; 56] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xff, 0xfe, 0x00, 0x00, 0x0a, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x02, 0x85, 0x00, 0x7b, 0x1a, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x0a,
    ];

    #[test]
    fn linux_neighbor_solicitation() {
        let (s, d, m) = icmp_of(&LINUX_NS);
        let r = parse_ndp(s, d, m).unwrap();
        let NdpRepr::NeighborSolicit { target, .. } = r else { panic!() };
        assert_eq!(target, a("fd00::b"));
        assert_eq!(d, target.solicited_node());
        assert_eq!(r.lladdr(), Ok(Some(MacAddr([2, 0, 0, 0, 0, 0x0a]))));
        assert_eq!(r.validate(s, d, 255), Ok(()));
        assert_eq!(r.validate(s, d, 254), Err(NdpInvalid::HopLimit));
        // Built from scratch, the same bytes.
        let mut o = [0u8; 8];
        let n = emit_options(&[NdpOption::SourceLinkAddr(MacAddr([2, 0, 0, 0, 0, 0x0a]))], &mut o);
        let built = NdpRepr::NeighborSolicit { target: a("fd00::b"), options: &o[..n] };
        assert_eq!(emit_icmp(built, s, d), m);
    }

    #[test]
    fn linux_neighbor_advertisement() {
        let (s, d, m) = icmp_of(&LINUX_NA);
        let r = parse_ndp(s, d, m).unwrap();
        let NdpRepr::NeighborAdvert { flags, target, .. } = r else { panic!() };
        assert_eq!(flags, NaFlags { router: true, solicited: true, override_: true });
        assert_eq!(target, a("fd00::b"));
        assert_eq!(r.lladdr(), Ok(Some(MacAddr([2, 0, 0, 0, 0, 0x0b]))));
        assert_eq!(r.validate(s, d, 255), Ok(()));
        // Solicited to all-nodes is invalid.
        assert_eq!(r.validate(s, ipv6::ALL_NODES, 255), Err(NdpInvalid::SolicitedToMulticast));
        assert_eq!(emit_icmp(r, s, d), m);
    }

    #[test]
    fn linux_dad_solicitation_has_a_nonce_and_no_lladdr() {
        let (s, d, m) = icmp_of(&LINUX_DAD_NS);
        let r = parse_ndp(s, d, m).unwrap();
        assert!(s.is_unspecified());
        assert_eq!(r.lladdr(), Ok(None));
        let o: Vec<_> = r.options().collect();
        assert_eq!(o, [Ok(NdpOption::Nonce(&[0xe8, 0xa3, 0x07, 0x46, 0xb7, 0xd6]))]);
        assert_eq!(r.validate(s, d, 255), Ok(()));
        // DAD to a non-solicited-node group, or with a lladdr, is invalid.
        assert_eq!(r.validate(s, ipv6::ALL_NODES, 255), Err(NdpInvalid::UnspecifiedSourceNotSolicitedNode));
        let mut o = [0u8; 8];
        NdpOption::SourceLinkAddr(MacAddr([2, 0, 0, 0, 0, 1])).emit(&mut o);
        let bad = NdpRepr::NeighborSolicit { target: a("fe80::ff:fe00:a"), options: &o };
        assert_eq!(bad.validate(s, d, 255), Err(NdpInvalid::UnspecifiedSourceWithLladdr));
        assert_eq!(emit_icmp(r, s, d), m);
    }

    #[test]
    fn linux_router_solicitation() {
        let (s, d, m) = icmp_of(&LINUX_RS);
        let r = parse_ndp(s, d, m).unwrap();
        assert!(matches!(r, NdpRepr::RouterSolicit { .. }));
        assert_eq!(d, ipv6::ALL_ROUTERS);
        assert_eq!(r.lladdr(), Ok(Some(MacAddr([2, 0, 0, 0, 0, 0x0a]))));
        assert_eq!(r.validate(s, d, 255), Ok(()));
        assert_eq!(emit_icmp(r, s, d), m);
    }

    #[test]
    fn router_advertisement_with_prefix_mtu_and_lladdr() {
        let (s, d) = (a("fe80::1"), ipv6::ALL_NODES);
        let pi = PrefixInfo {
            prefix_len: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: 2_592_000,
            preferred_lifetime: 604_800,
            prefix: a("2001:db8:1::"),
        };
        let mut o = [0u8; 64];
        let n = emit_options(
            &[NdpOption::SourceLinkAddr(MacAddr([2, 0, 0, 0, 0, 1])), NdpOption::Mtu(1400), NdpOption::PrefixInfo(pi)],
            &mut o,
        );
        assert_eq!(n, 48);
        // The prefix option as RFC 4861 §4.6.2 lays it out.
        assert_eq!(&o[16..20], &[3, 4, 64, 0xc0]);
        assert_eq!(&o[20..24], &2_592_000u32.to_be_bytes());
        let ra = NdpRepr::RouterAdvert {
            hop_limit: 64,
            managed: false,
            other: true,
            preference: RouterPreference::Medium,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
            options: &o[..n],
        };
        let b = emit_icmp(ra, s, d);
        assert_eq!(&b[..8], &[134, 0, b[2], b[3], 64, 0x40, 0x07, 0x08]);
        let r = parse_ndp(s, d, &b).unwrap();
        assert_eq!(r, ra);
        assert_eq!(r.mtu(), Some(1400));
        assert_eq!(r.prefixes().collect::<Vec<_>>(), [pi]);
        assert_eq!(r.validate(s, d, 255), Ok(()));
        assert_eq!(r.validate(a("fd00::1"), d, 255), Err(NdpInvalid::SourceNotLinkLocal));
    }

    #[test]
    fn redirect_with_target_lladdr_and_redirected_header() {
        let (s, d) = (a("fe80::1"), a("fd00::a"));
        let quoted = [0x60u8; 48];
        let mut o = [0u8; 64];
        let n = emit_options(
            &[NdpOption::TargetLinkAddr(MacAddr([2, 0, 0, 0, 0, 2])), NdpOption::RedirectedHeader(&quoted)],
            &mut o,
        );
        assert_eq!(n, 8 + 56);
        let rd = NdpRepr::Redirect { target: a("fe80::2"), dest: a("2001:db8::9"), options: &o[..n] };
        let b = emit_icmp(rd, s, d);
        let r = parse_ndp(s, d, &b).unwrap();
        assert_eq!(r, rd);
        assert_eq!(r.lladdr(), Ok(Some(MacAddr([2, 0, 0, 0, 0, 2]))));
        assert_eq!(r.redirected_header(), Some(&quoted[..]));
        assert_eq!(r.validate(s, d, 255), Ok(()));
        let off_link = NdpRepr::Redirect { target: a("fd00::2"), dest: a("2001:db8::9"), options: &[] };
        assert_eq!(off_link.validate(s, d, 255), Err(NdpInvalid::RedirectTarget));
        let mc = NdpRepr::Redirect { target: a("fe80::2"), dest: a("ff0e::1"), options: &[] };
        assert_eq!(mc.validate(s, d, 255), Err(NdpInvalid::RedirectDestMulticast));
    }

    #[test]
    fn option_length_edges() {
        let (s, d, m) = icmp_of(&LINUX_NS);
        // Length 0: the message is invalid.
        let mut z = m.to_vec();
        z[25] = 0;
        assert_eq!(parse_ndp(s, d, fix(s, d, &mut z)).unwrap_err(), WireError::Malformed);
        // Length 2 (16 bytes) with 8 present: truncated.
        let mut t = m.to_vec();
        t[25] = 2;
        assert_eq!(parse_ndp(s, d, fix(s, d, &mut t)).unwrap_err(), WireError::Truncated);
        // A lone type byte with no length.
        let mut l = m.to_vec();
        l.push(1);
        assert_eq!(parse_ndp(s, d, fix(s, d, &mut l)).unwrap_err(), WireError::Truncated);
        // A source lladdr of length 2 parses (framing is fine) but the
        // link-layer address is refused, as nd6.c does.
        let mut w = m.to_vec();
        w[25] = 2;
        w.extend_from_slice(&[0; 8]);
        let r = parse_ndp(s, d, fix(s, d, &mut w)).unwrap();
        assert_eq!(r.lladdr(), Err(NdpInvalid::BadLladdr));
        assert_eq!(r.validate(s, d, 255), Err(NdpInvalid::BadLladdr));
        assert_eq!(r.options().next(), Some(Err(NdpOptionError { kind: NdpOptionErrorKind::BadLength, offset: 24 })));
        // No options at all, and a body cut short.
        let (s2, d2, na) = icmp_of(&LINUX_NA);
        let mut n = na[..24].to_vec();
        assert_eq!(parse_ndp(s2, d2, fix(s2, d2, &mut n)).unwrap().lladdr(), Ok(None));
        let mut n = na[..23].to_vec();
        assert_eq!(parse_ndp(s2, d2, fix(s2, d2, &mut n)).unwrap_err(), WireError::Truncated);
        // Code other than 0.
        let mut c = na.to_vec();
        c[1] = 1;
        assert_eq!(parse_ndp(s2, d2, fix(s2, d2, &mut c)).unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn rdnss_and_dnssl_options() {
        let servers: Vec<u8> = [a("2001:db8::53"), a("2001:db8::54")].iter().flat_map(|x| x.octets()).collect();
        // "example.com" in DNS encoding, padded to 16.
        let mut domains = [0u8; 16];
        domains[..13].copy_from_slice(b"\x07example\x03com\x00");
        let opts = [
            NdpOption::Rdnss { lifetime: 600, servers: &servers },
            NdpOption::Dnssl { lifetime: 600, domains: &domains },
        ];
        let mut b = [0u8; 64];
        let n = emit_options(&opts, &mut b);
        assert_eq!(n, 40 + 24);
        assert_eq!(&b[..8], &[25, 5, 0, 0, 0, 0, 0x02, 0x58]);
        assert_eq!(&b[40..42], &[31, 3]);
        let back: Vec<_> = options(&b[..n], 0).map(Result::unwrap).collect();
        assert_eq!(back, opts);
        // RDNSS with no server (length 1) or an even length is bad; DNSSL
        // of length 1 too.
        for bad in [[25u8, 1, 0, 0, 0, 0, 0, 0], [31, 1, 0, 0, 0, 0, 0, 0]] {
            let e = options(&bad, 16).next().unwrap().unwrap_err();
            assert_eq!((e.kind, e.offset), (NdpOptionErrorKind::BadLength, 16));
        }
        let mut even = [0u8; 32];
        even[..2].copy_from_slice(&[25, 4]);
        assert_eq!(options(&even, 0).next().unwrap().unwrap_err().kind, NdpOptionErrorKind::BadLength);
    }

    #[test]
    fn bad_length_prefix_is_skipped_and_mtu_checked() {
        // Prefix info of length 3 and MTU of length 2: both BadLength; the
        // framing is fine so the RA parses, and prefixes() skips it.
        let mut o = [0u8; 40];
        o[0] = 3;
        o[1] = 3;
        o[24] = 5;
        o[25] = 2;
        let ra = NdpRepr::RouterAdvert {
            hop_limit: 0,
            managed: true,
            other: false,
            preference: RouterPreference::Low,
            router_lifetime: 0,
            reachable_time: 30_000,
            retrans_timer: 1000,
            options: &o,
        };
        let (s, d) = (a("fe80::1"), ipv6::ALL_NODES);
        let b = emit_icmp(ra, s, d);
        let r = parse_ndp(s, d, &b).unwrap();
        assert_eq!(r.prefixes().count(), 0);
        assert_eq!(r.mtu(), None);
        let errs: Vec<_> = r.options().filter_map(Result::err).map(|e| (e.kind, e.offset)).collect();
        assert_eq!(errs, [(NdpOptionErrorKind::BadLength, 16), (NdpOptionErrorKind::BadLength, 40)]);
    }

    /// Recomputes the checksum of an edited message.
    fn fix(s: Ipv6Addr, d: Ipv6Addr, m: &mut [u8]) -> &[u8] {
        Icmpv6Packet::new_unchecked(&mut *m).fill_checksum(s, d);
        m
    }

    fn arb_option() -> impl Strategy<Value = (u8, [u8; 6], u32, u32, u8, bool)> {
        (0u8..5, any::<[u8; 6]>(), any::<u32>(), any::<u32>(), any::<u8>(), any::<bool>())
    }

    proptest! {
        #[test]
        fn options_round_trip(specs in proptest::collection::vec(arb_option(), 0..5)) {
            let data = [7u8; 30];
            let opts: Vec<NdpOption> = specs.iter().map(|&(k, m, x, y, l, f)| match k {
                0 => NdpOption::SourceLinkAddr(MacAddr(m)),
                1 => NdpOption::TargetLinkAddr(MacAddr(m)),
                2 => NdpOption::PrefixInfo(PrefixInfo { prefix_len: l, on_link: f, autonomous: !f,
                    valid_lifetime: x, preferred_lifetime: y, prefix: Ipv6Addr::from(((x as u128) << 96) | y as u128) }),
                3 => NdpOption::Mtu(x),
                4 if f => NdpOption::Nonce(&data[..(l as usize % 3) * 8 + 6]),
                _ => NdpOption::Unknown { kind: [6, 7, 8, 9, 13, 15, 24, 26, 200][l as usize % 9], data: &data[..(l as usize % 4) * 8 + 6] },
            }).collect();
            let mut b = vec![0u8; opts.iter().map(|o| o.buffer_len()).sum()];
            let n = emit_options(&opts, &mut b);
            prop_assert_eq!(n, b.len());
            let back: Vec<_> = options(&b, 0).map(Result::unwrap).collect();
            prop_assert_eq!(back, opts);
        }

        #[test]
        fn repr_round_trips(t in 0u8..5, x in any::<u128>(), y in any::<u128>(), fl in any::<u8>(), w in any::<u32>(), lt in any::<u16>(), nopts in 0usize..3) {
            let mut o = [0u8; 24];
            for i in 0..nopts {
                NdpOption::Mtu(w).emit(&mut o[i * 8..]);
            }
            let options = &o[..nopts * 8];
            let r = match t {
                0 => NdpRepr::RouterSolicit { options },
                1 => NdpRepr::RouterAdvert { hop_limit: fl, managed: fl & 1 != 0, other: fl & 2 != 0, preference: RouterPreference::from_bits(fl >> 2), router_lifetime: lt,
                    reachable_time: w, retrans_timer: !w, options },
                2 => NdpRepr::NeighborSolicit { target: x.into(), options },
                3 => NdpRepr::NeighborAdvert { flags: NaFlags { router: fl & 1 != 0, solicited: fl & 2 != 0, override_: fl & 4 != 0 },
                    target: x.into(), options },
                _ => NdpRepr::Redirect { target: x.into(), dest: y.into(), options },
            };
            let (s, d) = (a("fe80::1"), a("ff02::1"));
            let b = emit_icmp(r, s, d);
            prop_assert_eq!(parse_ndp(s, d, &b).unwrap(), r);
        }

        #[test]
        fn option_walker_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = check_framing(&b, 24);
            for o in options(&b, 24) {
                if let Err(e) = o { prop_assert!(e.offset >= 24 && e.offset < 24 + b.len()); }
            }
        }
    }

    #[test]
    fn captured_packets_have_hop_limit_255() {
        for p in [&LINUX_NS[..], &LINUX_NA, &LINUX_DAD_NS, &LINUX_RS] {
            assert_eq!(Ipv6Packet::new_checked(p).unwrap().hop_limit(), HOP_LIMIT);
        }
    }
}
