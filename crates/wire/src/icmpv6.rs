//! ICMPv6 (RFC 4443): errors quoting the invoking packet, echo, and the
//! NDP ([`crate::ndp`], RFC 4861) and MLD ([`crate::mld`], RFC 2710 / 3810)
//! messages carried in it. The checksum covers the IPv6 pseudo-header
//! (RFC 4443 §2.3), so parse and emit take the addresses.

use std::net::Ipv6Addr;

use crate::checksum;
use crate::ipv4::IpProtocol;
use crate::ipv6::{Ipv6Packet, HEADER_LEN as IPV6_HEADER_LEN, MIN_MTU};
use crate::mld::MldRepr;
use crate::ndp::NdpRepr;
use crate::{get32, put32, WireError};

/// Type, code, checksum and the 4-byte type-specific word.
pub const HEADER_LEN: usize = 8;
/// The most invoking-packet bytes an error may quote: the error must fit
/// in the minimum MTU (RFC 4443 §2.4 (c)).
pub const MAX_ERROR_QUOTE: usize = MIN_MTU - IPV6_HEADER_LEN - HEADER_LEN;

/// ICMPv6 message types (IANA "ICMPv6 Parameters").
pub mod msg_type {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const MLD_QUERY: u8 = 130;
    pub const MLD_REPORT: u8 = 131;
    pub const MLD_DONE: u8 = 132;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    pub const MLDV2_REPORT: u8 = 143;
}

/// Error messages are types 0..=127 (RFC 4443 §2.1); never sent about
/// another error (§2.4 (e.1)).
pub fn is_error(msg_type: u8) -> bool {
    msg_type < 128
}

/// The invoking packet's leading bytes an error quotes: as much as fits in
/// the minimum MTU (RFC 4443 §2.4 (c)).
pub fn error_quote(invoking: &[u8]) -> &[u8] {
    &invoking[..invoking.len().min(MAX_ERROR_QUOTE)]
}

/// Whether `error` may be sent about the packet `invoking` (the IPv6
/// packet from its first byte), per RFC 4443 §2.4 (e): never about an
/// ICMPv6 error or a redirect (e.1, e.2), nor about a packet whose source
/// does not identify one node (unspecified or multicast, e.6); about a
/// packet to a multicast address or received as link-layer multicast or
/// broadcast (`link_multicast`) only a packet too big, or a parameter
/// problem code 2 for an option whose type has the high bits 10 (e.3 to
/// e.5). An invoking packet that does not parse gets no error. Rate
/// limiting (e.7 / §2.4 (f)) is the caller's.
pub fn error_allowed(invoking: &[u8], link_multicast: bool, error: &Icmpv6Repr<'_>) -> bool {
    let Ok(p) = Ipv6Packet::new_checked(invoking) else { return false };
    let (src, dst) = (p.src(), p.dst());
    if src.is_unspecified() || src.is_multicast() {
        return false;
    }
    // (e.1, e.2): the invoking packet is itself an ICMPv6 error or redirect.
    // A chain that does not walk cannot be an error we know of.
    if let Ok(c) = p.ext_headers().walk() {
        if c.upper == IpProtocol::ICMPV6 && !c.is_later_fragment() {
            if let Some(&t) = p.packet().get(c.upper_offset) {
                if is_error(t) || t == msg_type::REDIRECT {
                    return false;
                }
            }
        }
    }
    if dst.is_multicast() || link_multicast {
        return match *error {
            Icmpv6Repr::PacketTooBig { .. } => true,
            Icmpv6Repr::ParamProblem { code: ParamProblem::UnrecognizedOption, pointer, .. } => {
                p.packet().get(pointer as usize).is_some_and(|&t| t >> 6 == 2)
            }
            _ => false,
        };
    }
    true
}

code_enum! {
    /// Destination unreachable codes (RFC 4443 §3.1, RFC 6550 §20.18).
    DstUnreachable {
        NoRoute = 0,
        /// Communication with the destination administratively prohibited.
        AdminProhibited = 1,
        BeyondScope = 2,
        AddrUnreachable = 3,
        PortUnreachable = 4,
        /// Source address failed ingress/egress policy.
        FailedPolicy = 5,
        RejectRoute = 6,
        /// Error in source routing header.
        SrcRoutingHeader = 7,
    }
}

code_enum! {
    /// Time exceeded codes (RFC 4443 §3.3).
    TimeExceeded {
        HopLimitExceeded = 0,
        FragReassembly = 1,
    }
}

code_enum! {
    /// Parameter problem codes (RFC 4443 §3.4, RFC 7112 §6).
    ParamProblem {
        ErroneousHeader = 0,
        UnrecognizedNextHeader = 1,
        UnrecognizedOption = 2,
        /// The first fragment lacks part of the header chain.
        IncompleteChain = 3,
    }
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ_NO: usize = 6;
    pub const MTU: usize = 4;
    pub const POINTER: usize = 4;
    pub const DATA: usize = 8;
}

/// A view of an ICMPv6 message (the whole upper-layer payload).
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    pub(crate) buf: T,
}

icmp_header!(Icmpv6Packet);

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Packet too big MTU (bytes 4..8).
    pub fn mtu(&self) -> u32 {
        get32(self.buf.as_ref(), field::MTU)
    }

    /// Parameter problem pointer (bytes 4..8): offset into the quoted packet.
    pub fn pointer(&self) -> u32 {
        get32(self.buf.as_ref(), field::POINTER)
    }

    /// Everything after the 8-byte header: echo data, the quoted packet,
    /// or the body of an NDP / MLD message.
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[field::DATA..]
    }

    fn sum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        let b = self.buf.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, b.len() as u32);
        checksum::combine(ph, checksum::sum(b))
    }

    /// Verifies the checksum over the whole buffer and the IPv6
    /// pseudo-header (`dst` is the final destination).
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::finish(self.sum(src, dst)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_mtu(&mut self, v: u32) {
        put32(self.buf.as_mut(), field::MTU, v);
    }
    pub fn set_pointer(&mut self, v: u32) {
        put32(self.buf.as_mut(), field::POINTER, v);
    }
    /// Recomputes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::finish(self.sum(src, dst));
        self.set_checksum(c);
    }
}

/// An ICMPv6 message, borrowing its data.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// `data` is the quoted invoking packet (see [`error_quote`]). The
    /// unused word of unreachable and time exceeded is ignored on parse
    /// and sent as zero (RFC 4443 §3.1).
    DstUnreachable {
        code: DstUnreachable,
        data: &'a [u8],
    },
    /// The MTU of the next-hop link (RFC 4443 §3.2, RFC 8201).
    PacketTooBig {
        mtu: u32,
        data: &'a [u8],
    },
    TimeExceeded {
        code: TimeExceeded,
        data: &'a [u8],
    },
    /// `pointer`: the offset in the invoking packet of the byte at fault.
    ParamProblem {
        code: ParamProblem,
        pointer: u32,
        data: &'a [u8],
    },
    /// Router / neighbor discovery and redirect (types 133..=137).
    Ndp(NdpRepr<'a>),
    /// MLD query, v1 report and done, v2 report (130, 131, 132, 143).
    Mld(MldRepr<'a>),
    /// Any other type, or a known error or echo type with an unknown code.
    /// `data` is everything after the checksum (bytes 4..).
    Other {
        msg_type: u8,
        code: u8,
        data: &'a [u8],
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses a message, verifying its checksum with the pseudo-header
    /// (else `BadChecksum`). An NDP or MLD message that is malformed (bad
    /// code, short body, bad option lengths) is an error, not `Other`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        p: &Icmpv6Packet<&'a T>,
    ) -> Result<Self, WireError> {
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let b: &'a [u8] = T::as_ref(p.buf);
        let data = &b[field::DATA..];
        let (t, code) = (p.msg_type(), p.code());
        let other = Icmpv6Repr::Other { msg_type: t, code, data: &b[4..] };
        Ok(match t {
            msg_type::ECHO_REQUEST if code == 0 => {
                Icmpv6Repr::EchoRequest { ident: p.echo_ident(), seq_no: p.echo_seq_no(), data }
            }
            msg_type::ECHO_REPLY if code == 0 => {
                Icmpv6Repr::EchoReply { ident: p.echo_ident(), seq_no: p.echo_seq_no(), data }
            }
            msg_type::DST_UNREACHABLE => match DstUnreachable::from_code(code) {
                Some(code) => Icmpv6Repr::DstUnreachable { code, data },
                None => other,
            },
            msg_type::PACKET_TOO_BIG if code == 0 => Icmpv6Repr::PacketTooBig { mtu: p.mtu(), data },
            msg_type::TIME_EXCEEDED => match TimeExceeded::from_code(code) {
                Some(code) => Icmpv6Repr::TimeExceeded { code, data },
                None => other,
            },
            msg_type::PARAM_PROBLEM => match ParamProblem::from_code(code) {
                Some(code) => Icmpv6Repr::ParamProblem { code, pointer: p.pointer(), data },
                None => other,
            },
            msg_type::ROUTER_SOLICIT..=msg_type::REDIRECT => Icmpv6Repr::Ndp(NdpRepr::parse(p)?),
            msg_type::MLD_QUERY | msg_type::MLD_REPORT | msg_type::MLD_DONE | msg_type::MLDV2_REPORT => {
                Icmpv6Repr::Mld(MldRepr::parse(p)?)
            }
            _ => other,
        })
    }

    /// The type this Repr emits.
    pub fn msg_type(&self) -> u8 {
        match self {
            Icmpv6Repr::EchoRequest { .. } => msg_type::ECHO_REQUEST,
            Icmpv6Repr::EchoReply { .. } => msg_type::ECHO_REPLY,
            Icmpv6Repr::DstUnreachable { .. } => msg_type::DST_UNREACHABLE,
            Icmpv6Repr::PacketTooBig { .. } => msg_type::PACKET_TOO_BIG,
            Icmpv6Repr::TimeExceeded { .. } => msg_type::TIME_EXCEEDED,
            Icmpv6Repr::ParamProblem { .. } => msg_type::PARAM_PROBLEM,
            Icmpv6Repr::Ndp(n) => n.msg_type(),
            Icmpv6Repr::Mld(m) => m.msg_type(),
            Icmpv6Repr::Other { msg_type, .. } => *msg_type,
        }
    }

    /// Whether this is an error message.
    pub fn is_error(&self) -> bool {
        is_error(self.msg_type())
    }

    /// The quoted invoking packet of an error, the data of an echo.
    pub fn data(&self) -> Option<&'a [u8]> {
        match *self {
            Icmpv6Repr::EchoRequest { data, .. }
            | Icmpv6Repr::EchoReply { data, .. }
            | Icmpv6Repr::DstUnreachable { data, .. }
            | Icmpv6Repr::PacketTooBig { data, .. }
            | Icmpv6Repr::TimeExceeded { data, .. }
            | Icmpv6Repr::ParamProblem { data, .. } => Some(data),
            _ => None,
        }
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::Ndp(n) => n.buffer_len(),
            Icmpv6Repr::Mld(m) => m.buffer_len(),
            Icmpv6Repr::Other { data, .. } => 4 + data.len(),
            _ => HEADER_LEN + self.data().map_or(0, <[u8]>::len),
        }
    }

    /// Writes the message at the start of `buf` and fills the checksum over
    /// `buffer_len()` bytes with the pseudo-header of `src` → `dst`. Panics
    /// if `buf` is shorter, or `Other` data shorter than 4 bytes.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buf: &mut [u8]) {
        let len = self.buffer_len();
        let buf = &mut buf[..len];
        match *self {
            Icmpv6Repr::Ndp(n) => n.emit(buf),
            Icmpv6Repr::Mld(m) => m.emit(buf),
            Icmpv6Repr::Other { msg_type, code, data } => {
                buf[0] = msg_type;
                buf[1] = code;
                buf[4..].copy_from_slice(data);
            }
            _ => {
                let mut p = Icmpv6Packet::new_unchecked(&mut *buf);
                p.set_msg_type(self.msg_type());
                match *self {
                    Icmpv6Repr::EchoRequest { ident, seq_no, .. } | Icmpv6Repr::EchoReply { ident, seq_no, .. } => {
                        p.set_echo_ident(ident);
                        p.set_echo_seq_no(seq_no);
                        p.set_code(0);
                    }
                    Icmpv6Repr::DstUnreachable { code, .. } => {
                        p.set_code(code.into());
                        p.set_pointer(0);
                    }
                    Icmpv6Repr::PacketTooBig { mtu, .. } => {
                        p.set_code(0);
                        p.set_mtu(mtu);
                    }
                    Icmpv6Repr::TimeExceeded { code, .. } => {
                        p.set_code(code.into());
                        p.set_pointer(0);
                    }
                    Icmpv6Repr::ParamProblem { code, pointer, .. } => {
                        p.set_code(code.into());
                        p.set_pointer(pointer);
                    }
                    _ => unreachable!("handled above"),
                }
                buf[field::DATA..].copy_from_slice(self.data().unwrap_or(&[]));
            }
        }
        Icmpv6Packet::new_unchecked(buf).fill_checksum(src, dst);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ipv6::Ipv6Repr;
    use proptest::prelude::*;

    pub(crate) fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The ICMPv6 message and addresses of a captured IPv6 packet.
    pub(crate) fn icmp_of(pkt: &[u8]) -> (Ipv6Addr, Ipv6Addr, &[u8]) {
        let p = Ipv6Packet::new_checked(pkt).unwrap();
        let c = p.ext_headers().walk().unwrap();
        assert_eq!(c.upper, IpProtocol::ICMPV6);
        (p.src(), p.dst(), &pkt[c.upper_offset..p.total_len()])
    }

    /// Linux: fd00::b answers a UDP datagram to port 53 with "port
    /// unreachable", quoting the whole datagram (its UDP checksum was left
    /// to offload, so it is wrong in the quote, as captured).
    const LINUX_PORT_UNREACHABLE: [u8; 101] = [
        0x60, 0x05, 0x18, 0xe2, 0x00, 0x3d, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x0a, 0x01, 0x04, 0xd0, 0xd4, 0x00, 0x00, 0x00, 0x00, 0x60, 0x0d, 0xfe, 0x9f, 0x00, 0x0d,
        0x11, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a,
        0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x8b, 0x3e,
        0x00, 0x35, 0x00, 0x0d, 0xfa, 0x34, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    #[test]
    fn linux_echo_request_parses_and_re_emits_identically() {
        let pkt = crate::ipv6::tests::LINUX_ECHO_REQUEST;
        let (s, d, m) = icmp_of(&pkt);
        let p = Icmpv6Packet::new_checked(m).unwrap();
        let r = Icmpv6Repr::parse(s, d, &p).unwrap();
        assert_eq!(r, Icmpv6Repr::EchoRequest { ident: 0x680f, seq_no: 1, data: &[0, 1, 2, 3, 4, 5, 6, 7] });
        let mut out = [0u8; 16];
        r.emit(s, d, &mut out);
        assert_eq!(&out[..], m);
        // The checksum covers the pseudo-header: another destination fails.
        assert_eq!(Icmpv6Repr::parse(s, a("fd00::c"), &p).unwrap_err(), WireError::BadChecksum);
        // An echo reply to it.
        let reply = Icmpv6Repr::EchoReply { ident: 0x680f, seq_no: 1, data: &[0, 1, 2, 3, 4, 5, 6, 7] };
        reply.emit(d, s, &mut out);
        assert!(Icmpv6Packet::new_checked(&out[..]).unwrap().verify_checksum(d, s));
    }

    #[test]
    fn linux_port_unreachable_quotes_the_invoking_packet() {
        let (s, d, m) = icmp_of(&LINUX_PORT_UNREACHABLE);
        let r = Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(m).unwrap()).unwrap();
        let Icmpv6Repr::DstUnreachable { code: DstUnreachable::PortUnreachable, data } = r else { panic!("{r:?}") };
        assert!(r.is_error());
        let q = Ipv6Packet::new_checked(data).unwrap();
        assert_eq!((q.src(), q.dst(), q.next_header()), (a("fd00::a"), a("fd00::b"), IpProtocol::UDP));
        let mut out = [0u8; 61];
        r.emit(s, d, &mut out);
        assert_eq!(&out[..], m);
    }

    #[test]
    fn packet_too_big_and_param_problem_carry_their_word() {
        let (s, d) = (a("fd00::1"), a("fd00::2"));
        let quote = [0x60u8; 48];
        let r = Icmpv6Repr::PacketTooBig { mtu: 1400, data: &quote };
        let mut b = [0u8; 56];
        r.emit(s, d, &mut b);
        assert_eq!(&b[..2], &[2, 0]);
        assert_eq!(&b[4..8], &[0, 0, 0x05, 0x78]);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.mtu(), 1400);
        assert_eq!(Icmpv6Repr::parse(s, d, &p).unwrap(), r);
        let r = Icmpv6Repr::ParamProblem { code: ParamProblem::UnrecognizedNextHeader, pointer: 40, data: &quote };
        r.emit(s, d, &mut b);
        assert_eq!(&b[..8], &[4, 1, b[2], b[3], 0, 0, 0, 40]);
        assert_eq!(Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        let r = Icmpv6Repr::TimeExceeded { code: TimeExceeded::HopLimitExceeded, data: &quote };
        r.emit(s, d, &mut b);
        assert_eq!(&b[..2], &[3, 0]);
        assert_eq!(Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn codes_and_error_classes() {
        for c in 0..8u8 {
            assert_eq!(u8::from(DstUnreachable::from_code(c).unwrap()), c);
        }
        assert_eq!(DstUnreachable::from_code(8), None);
        assert_eq!(ParamProblem::try_from(3), Ok(ParamProblem::IncompleteChain));
        assert_eq!(ParamProblem::try_from(4), Err(WireError::Unsupported));
        assert_eq!(TimeExceeded::from_code(2), None);
        assert!(is_error(1) && is_error(127) && !is_error(128) && !is_error(135));
    }

    #[test]
    fn error_quote_fits_the_minimum_mtu() {
        let big = [0u8; 2000];
        assert_eq!(error_quote(&big).len(), 1280 - 48);
        assert_eq!(error_quote(&big[..100]).len(), 100);
        let q = error_quote(&big);
        let r = Icmpv6Repr::DstUnreachable { code: DstUnreachable::NoRoute, data: q };
        assert_eq!(40 + r.buffer_len(), 1280);
    }

    #[test]
    fn unknown_codes_and_types_are_other_and_round_trip() {
        let (s, d) = (a("fe80::1"), a("ff02::1"));
        for (t, c, w) in
            [(1u8, 9u8, [0u8; 4]), (4, 9, [0, 0, 0, 1]), (3, 7, [0; 4]), (128, 1, [0; 4]), (200, 0, [1; 4])]
        {
            let mut data = w.to_vec();
            data.extend_from_slice(&[0x60; 8]);
            let r = Icmpv6Repr::Other { msg_type: t, code: c, data: &data };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(s, d, &mut b);
            assert_eq!(Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        }
        assert_eq!(Icmpv6Packet::new_checked(&[0u8; 7][..]).unwrap_err(), WireError::Truncated);
    }

    /// An IPv6 packet from `s` to `d` carrying `l4` as `nh`.
    fn packet(s: &str, d: &str, nh: IpProtocol, l4: &[u8]) -> Vec<u8> {
        let r = Ipv6Repr {
            src: a(s),
            dst: a(d),
            next_header: nh,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: l4.len(),
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b);
        b[40..].copy_from_slice(l4);
        b
    }

    #[test]
    fn errors_are_not_sent_where_rfc4443_forbids() {
        let unreach = Icmpv6Repr::DstUnreachable { code: DstUnreachable::NoRoute, data: &[] };
        let ptb = Icmpv6Repr::PacketTooBig { mtu: 1280, data: &[] };
        let udp = [0u8; 8];
        // A unicast UDP packet: any error.
        let u = packet("fd00::1", "fd00::2", IpProtocol::UDP, &udp);
        assert!(error_allowed(&u, false, &unreach));
        // Received as link-layer multicast: only packet too big.
        assert!(!error_allowed(&u, true, &unreach));
        assert!(error_allowed(&u, true, &ptb));
        // To a multicast group: the same.
        let m = packet("fd00::1", "ff0e::1", IpProtocol::UDP, &udp);
        assert!(!error_allowed(&m, false, &unreach) && error_allowed(&m, false, &ptb));
        // From :: or from a multicast source: nothing.
        assert!(!error_allowed(&packet("::", "fd00::2", IpProtocol::UDP, &udp), false, &ptb));
        assert!(!error_allowed(&packet("ff02::1", "fd00::2", IpProtocol::UDP, &udp), false, &unreach));
        // About an ICMPv6 error or a redirect: nothing; about an echo: yes.
        let err = packet("fd00::1", "fd00::2", IpProtocol::ICMPV6, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(!error_allowed(&err, false, &unreach));
        let redirect = packet("fe80::1", "fd00::2", IpProtocol::ICMPV6, &[137, 0, 0, 0, 0, 0, 0, 0]);
        assert!(!error_allowed(&redirect, false, &unreach));
        let echo = packet("fd00::1", "fd00::2", IpProtocol::ICMPV6, &[128, 0, 0, 0, 0, 0, 0, 0]);
        assert!(error_allowed(&echo, false, &unreach));
        // To multicast, an unknown option whose type has high bits 10 gets
        // its parameter problem; 11 does not.
        for (t, want) in [(0x9e, true), (0xde, false)] {
            let hbh = [17, 0, t, 0, 1, 2, 0, 0, 0, 1, 0, 2, 0, 8, 0, 0];
            let m = packet("fd00::1", "ff0e::1", IpProtocol::HOPOPT, &hbh);
            let pp = Icmpv6Repr::ParamProblem { code: ParamProblem::UnrecognizedOption, pointer: 42, data: &[] };
            assert_eq!(error_allowed(&m, false, &pp), want, "{t:#x}");
            assert!(error_allowed(&packet("fd00::1", "fd00::2", IpProtocol::HOPOPT, &hbh), false, &pp));
        }
        // Garbage gets nothing.
        assert!(!error_allowed(&[0x60; 20], false, &ptb));
    }

    static DATA: [u8; 64] = {
        let mut d = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            d[i] = (i * 13 + 5) as u8;
            i += 1;
        }
        d
    };

    fn arb_repr(data: &[u8]) -> impl Strategy<Value = Icmpv6Repr<'_>> {
        (0u8..6, any::<u16>(), any::<u16>(), any::<u8>(), any::<u32>(), 0..=data.len()).prop_map(
            move |(kind, x, y, c8, w, n)| {
                let data = &data[..n];
                match kind {
                    0 => Icmpv6Repr::EchoRequest { ident: x, seq_no: y, data },
                    1 => Icmpv6Repr::EchoReply { ident: x, seq_no: y, data },
                    2 => Icmpv6Repr::DstUnreachable { code: DstUnreachable::from_code(c8 % 8).unwrap(), data },
                    3 => Icmpv6Repr::PacketTooBig { mtu: w, data },
                    4 => Icmpv6Repr::TimeExceeded { code: TimeExceeded::from_code(c8 % 2).unwrap(), data },
                    _ => Icmpv6Repr::ParamProblem { code: ParamProblem::from_code(c8 % 4).unwrap(), pointer: w, data },
                }
            },
        )
    }

    proptest! {
        #[test]
        fn repr_round_trips(r in arb_repr(&DATA), s in any::<u128>(), d in any::<u128>()) {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let mut b = [0u8; 80];
            let n = r.buffer_len();
            r.emit(s, d, &mut b);
            let p = Icmpv6Packet::new_checked(&b[..n]).unwrap();
            prop_assert!(p.verify_checksum(s, d));
            prop_assert_eq!(Icmpv6Repr::parse(s, d, &p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..120), t in 128u8..144, fix in any::<bool>()) {
            let (s, d) = (a("fe80::1"), a("ff02::1"));
            if fix && b.len() >= 8 {
                b[0] = t;
                b[1] = 0;
                Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
            }
            if let Ok(p) = Icmpv6Packet::new_checked(&b[..]) {
                if let Ok(r) = Icmpv6Repr::parse(s, d, &p) {
                    let mut out = vec![0u8; r.buffer_len()];
                    r.emit(s, d, &mut out);
                    let q = Icmpv6Packet::new_checked(&out[..]).unwrap();
                    prop_assert_eq!(Icmpv6Repr::parse(s, d, &q).unwrap(), r);
                }
            }
        }
    }
}
