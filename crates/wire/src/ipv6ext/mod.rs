//! IPv6 extension headers (RFC 8200 §4): hop-by-hop and destination
//! options with their TLV walker (`options.rs`), the routing and fragment
//! headers (`headers.rs`; routing type 0 identified so it can be refused as
//! RFC 5095 requires), AH passed over by its length, and a walker over the
//! whole chain (here). Everything is re-exported here: `ipv6ext::X`.
//!
//! Offsets in items and errors count from the first byte of the IPv6
//! packet, so an [`ExtError`]'s offset is the ICMPv6 parameter problem
//! pointer (RFC 4443 §3.4).

mod headers;
mod options;

pub use headers::*;
pub use options::*;

use crate::icmpv6::ParamProblem;
use crate::ipv4::IpProtocol;
use crate::ipv6::{NEXT_HEADER_OFFSET, PAYLOAD_LEN_OFFSET};

/// The most extension headers the chain walker accepts, as pf.c's
/// `PF_HDR_LIMIT` (pf_walk_header6).
pub const MAX_EXT_HEADERS: usize = 20;
/// The fragment header's fixed size.
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// Offset of the routing type inside a routing header: the pointer of the
/// parameter problem for an unrecognized (or type 0) routing header.
pub const ROUTING_TYPE_OFFSET: usize = 2;
/// Offset of the segments left field inside a routing header.
pub const SEGMENTS_LEFT_OFFSET: usize = 3;
/// Offset of the fragment offset field inside a fragment header.
pub const FRAG_OFFSET_OFFSET: usize = 2;

/// Whether `p` is an extension header the chain walker steps over
/// (hop-by-hop, routing, fragment, destination options, AH). ESP and "no
/// next header" end the chain like an upper-layer protocol.
pub fn is_ext_header(p: IpProtocol) -> bool {
    matches!(
        p,
        IpProtocol::HOPOPT | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_FRAG | IpProtocol::IPV6_OPTS | IpProtocol::AH
    )
}

/// One extension header from [`ExtHeaders`].
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub struct ExtHeader<'a> {
    /// Which header this is (the next header value that named it).
    pub kind: IpProtocol,
    /// Its offset from the start of the packet.
    pub offset: usize,
    /// The whole header.
    pub bytes: &'a [u8],
}

impl<'a> ExtHeader<'a> {
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.bytes[0])
    }

    /// The options of a hop-by-hop or destination options header, with
    /// packet offsets (already checked by the chain walker).
    pub fn options(&self) -> Option<Options<'a>> {
        matches!(self.kind, IpProtocol::HOPOPT | IpProtocol::IPV6_OPTS)
            .then(|| options(&self.bytes[2..], self.offset + 2))
    }

    pub fn routing(&self) -> Option<RoutingHeader<&'a [u8]>> {
        (self.kind == IpProtocol::IPV6_ROUTE).then(|| RoutingHeader::new_unchecked(self.bytes))
    }

    pub fn fragment(&self) -> Option<FragmentRepr> {
        (self.kind == IpProtocol::IPV6_FRAG)
            .then(|| FragmentRepr::parse(&FragmentHeader::new_unchecked(self.bytes)).expect("infallible"))
    }
}

/// What is wrong with a header chain.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum ExtErrorKind {
    /// A header runs past the end of the packet (offset: its start). In a
    /// first fragment this is [`IncompleteChain`](Self::IncompleteChain).
    Truncated,
    /// The first fragment does not hold the whole chain and the upper-layer
    /// header (RFC 7112 §5): parameter problem code 3, pointer 0.
    IncompleteChain,
    /// A hop-by-hop header anywhere but first (RFC 8200 §4.1); offset: the
    /// next header field that named it: parameter problem code 1.
    HopByHopNotFirst,
    /// More than [`MAX_EXT_HEADERS`] headers; offset: the header past it.
    TooManyHeaders,
    /// An option's length is wrong (offset: its length byte): code 0.
    BadOption,
    /// A fragment with M set whose data is not a multiple of 8 bytes (RFC
    /// 8200 §4.5); offset: the payload length field: code 0.
    FragmentLength,
    /// Fragment offset plus data past 65535 bytes (RFC 8200 §4.5); offset:
    /// the fragment offset field: code 0.
    FragmentOverflow,
}

/// A bad header chain: which header, which byte.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("bad IPv6 {header} header ({kind:?}) at offset {offset}")]
pub struct ExtError {
    pub kind: ExtErrorKind,
    /// The header in which the error was found.
    pub header: IpProtocol,
    /// The byte at fault, from the start of the packet.
    pub offset: usize,
}

impl ExtError {
    /// The parameter problem the stack answers with (RFC 8200 §4, RFC 7112
    /// §5): code and pointer. `None` where the packet is only dropped (a
    /// truncated packet, or more headers than the limit, as pf drops them).
    pub fn param_problem(&self) -> Option<(ParamProblem, u32)> {
        let at = self.offset as u32;
        Some(match self.kind {
            ExtErrorKind::Truncated | ExtErrorKind::TooManyHeaders => return None,
            ExtErrorKind::IncompleteChain => (ParamProblem::IncompleteChain, 0),
            ExtErrorKind::HopByHopNotFirst => (ParamProblem::UnrecognizedNextHeader, at),
            ExtErrorKind::BadOption | ExtErrorKind::FragmentLength | ExtErrorKind::FragmentOverflow => {
                (ParamProblem::ErroneousHeader, at)
            }
        })
    }
}

/// The result of walking a whole chain.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct HeaderChain {
    /// What follows the extension headers: an upper-layer protocol, ESP, or
    /// "no next header"; for a later fragment, the fragment's next header.
    pub upper: IpProtocol,
    /// Where `upper` begins (for a later fragment: the fragment data).
    pub upper_offset: usize,
    /// Offset of the next header byte that names `upper`: the pointer of a
    /// parameter problem code 1 for an unknown protocol.
    pub nh_offset: usize,
    /// Offset and contents of the fragment header, if any.
    pub fragment: Option<(usize, FragmentRepr)>,
    /// Offset of the (first) routing header, if any.
    pub routing: Option<usize>,
    /// Why OpenBSD refuses the packet for its routing headers, as a
    /// parameter problem (code 0) pointer: the routing type byte of a type
    /// 0 header (RFC 5095, whatever its segments left), or the start of a
    /// second routing header, whichever comes first (ip6_check_rh0hdr in
    /// ip6_input.c; pf_walk_header6 drops both too).
    pub bad_routing: Option<usize>,
    /// Whether a hop-by-hop header is present (it is always at 40).
    pub hop_by_hop: bool,
    /// Number of extension headers.
    pub count: usize,
}

impl HeaderChain {
    /// A fragment with a non-zero offset: the bytes after the fragment
    /// header are fragment data, not an upper-layer header.
    pub fn is_later_fragment(&self) -> bool {
        self.fragment.is_some_and(|(_, f)| f.frag_offset != 0)
    }

    /// A real fragment (not atomic, RFC 6946).
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some_and(|(_, f)| !f.is_atomic())
    }
}

/// Walks a header chain (RFC 8200 §4.1 order rules, RFC 7112 limits), as
/// ip6_input.c's loop and pf.c's pf_walk_header6 do. Yields each extension
/// header, one error then nothing on a bad chain. It stops at ESP, "no next
/// header", any other protocol (the upper layer), or after the fragment
/// header of a later fragment. AH is stepped over by its length.
#[derive(Debug, Clone)]
pub struct ExtHeaders<'a> {
    buf: &'a [u8],
    pos: usize,
    next: IpProtocol,
    nh_offset: usize,
    count: usize,
    done: bool,
    failed: bool,
    fragment: Option<(usize, FragmentRepr)>,
    routing: Option<usize>,
    bad_routing: Option<usize>,
    hop_by_hop: bool,
    cut: bool,
}

impl<'a> ExtHeaders<'a> {
    /// `buf` is the IPv6 packet from its first byte up to the end of its
    /// payload; `first` the fixed header's next header; `start` where the
    /// first extension header begins (40). The next header field naming
    /// the first one is assumed at byte 6.
    pub fn new(first: IpProtocol, buf: &'a [u8], start: usize) -> Self {
        ExtHeaders {
            buf,
            pos: start,
            next: first,
            nh_offset: NEXT_HEADER_OFFSET,
            count: 0,
            done: false,
            failed: false,
            fragment: None,
            routing: None,
            bad_routing: None,
            hop_by_hop: false,
            cut: false,
        }
    }

    /// Marks `buf` as a cut quote (an ICMPv6 error's invoking packet): the
    /// fragment length checks and RFC 7112's are skipped, as the bytes
    /// after the quote are missing, and running out is `Truncated`.
    pub fn cut(mut self, cut: bool) -> Self {
        self.cut = cut;
        self
    }

    /// A first fragment whose chain must be whole (RFC 7112).
    fn in_first_fragment(&self) -> bool {
        !self.cut && self.fragment.is_some_and(|(_, f)| f.frag_offset == 0 && f.more_frags)
    }

    /// Walks the whole chain.
    pub fn walk(mut self) -> Result<HeaderChain, ExtError> {
        for h in self.by_ref() {
            h?;
        }
        Ok(self.summary().expect("walked without error"))
    }

    /// After the iterator returned `None` without an error: the summary.
    pub fn summary(&self) -> Option<HeaderChain> {
        (self.done && !self.failed).then_some(HeaderChain {
            upper: self.next,
            upper_offset: self.pos,
            nh_offset: self.nh_offset,
            fragment: self.fragment,
            routing: self.routing,
            bad_routing: self.bad_routing,
            hop_by_hop: self.hop_by_hop,
            count: self.count,
        })
    }

    fn fail(&mut self, kind: ExtErrorKind, offset: usize) -> Option<Result<ExtHeader<'a>, ExtError>> {
        self.done = true;
        self.failed = true;
        Some(Err(ExtError { kind, header: self.next, offset }))
    }

    /// Truncation, or an incomplete chain in a first fragment.
    fn short(&mut self) -> Option<Result<ExtHeader<'a>, ExtError>> {
        if self.in_first_fragment() {
            self.fail(ExtErrorKind::IncompleteChain, 0)
        } else {
            let at = self.pos;
            self.fail(ExtErrorKind::Truncated, at)
        }
    }
}

impl<'a> Iterator for ExtHeaders<'a> {
    type Item = Result<ExtHeader<'a>, ExtError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let kind = self.next;
        let at = self.pos;
        let rest = &self.buf[at.min(self.buf.len())..];
        if !is_ext_header(kind) {
            self.done = true;
            // RFC 7112: a first fragment must reach the upper-layer header.
            if self.in_first_fragment() && kind != IpProtocol::IPV6_NONXT && rest.is_empty() {
                return self.fail(ExtErrorKind::IncompleteChain, 0);
            }
            return None;
        }
        if kind == IpProtocol::HOPOPT && self.count > 0 {
            let nh = self.nh_offset;
            return self.fail(ExtErrorKind::HopByHopNotFirst, nh);
        }
        if self.count == MAX_EXT_HEADERS {
            return self.fail(ExtErrorKind::TooManyHeaders, at);
        }
        let len = match kind {
            IpProtocol::IPV6_FRAG => FRAGMENT_HEADER_LEN,
            IpProtocol::AH => match rest.get(1) {
                Some(&l) => (l as usize + 2) * 4,
                None => return self.short(),
            },
            _ => match rest.get(1) {
                Some(&l) => (l as usize + 1) * 8,
                None => return self.short(),
            },
        };
        if len > rest.len() {
            return self.short();
        }
        let bytes = &rest[..len];
        match kind {
            IpProtocol::HOPOPT | IpProtocol::IPV6_OPTS => {
                if let Err(e) = check_options(&bytes[2..], at + 2) {
                    return self.fail(ExtErrorKind::BadOption, e.offset);
                }
                self.hop_by_hop |= kind == IpProtocol::HOPOPT;
            }
            IpProtocol::IPV6_ROUTE => {
                if self.routing.is_some() {
                    self.bad_routing.get_or_insert(at);
                }
                self.routing.get_or_insert(at);
                if bytes[ROUTING_TYPE_OFFSET] == routing_type::SOURCE_ROUTE {
                    self.bad_routing.get_or_insert(at + ROUTING_TYPE_OFFSET);
                }
            }
            IpProtocol::IPV6_FRAG => {
                let f = FragmentRepr::parse(&FragmentHeader::new_unchecked(bytes)).expect("infallible");
                let data = rest.len() - len;
                if !self.cut && f.more_frags && !data.is_multiple_of(8) {
                    return self.fail(ExtErrorKind::FragmentLength, PAYLOAD_LEN_OFFSET);
                }
                if !self.cut && f.frag_offset as usize + data > u16::MAX as usize {
                    return self.fail(ExtErrorKind::FragmentOverflow, at + FRAG_OFFSET_OFFSET);
                }
                self.fragment = Some((at, f));
            }
            _ => {}
        }
        self.count += 1;
        self.nh_offset = at;
        self.next = IpProtocol(bytes[0]);
        self.pos = at + len;
        // A later fragment: what follows is fragment data.
        if kind == IpProtocol::IPV6_FRAG && self.fragment.is_some_and(|(_, f)| f.frag_offset != 0) {
            self.done = true;
        }
        Some(Ok(ExtHeader { kind, offset: at, bytes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv6::{Ipv6Packet, Ipv6Repr};
    use crate::WireError;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    /// An IPv6 packet: the fixed header naming `first`, then `rest`.
    fn pkt(first: IpProtocol, rest: &[u8]) -> Vec<u8> {
        let r = Ipv6Repr {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
            next_header: first,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: rest.len(),
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b);
        b[40..].copy_from_slice(rest);
        b
    }

    fn walk(b: &[u8]) -> Result<HeaderChain, ExtError> {
        Ipv6Packet::new_checked(b).unwrap().ext_headers().walk()
    }

    const UDP8: [u8; 8] = [0, 1, 0, 2, 0, 8, 0, 0];

    #[test]
    fn no_extension_headers_points_at_the_fixed_next_header() {
        let c = walk(&pkt(IpProtocol::UDP, &UDP8)).unwrap();
        assert_eq!((c.upper, c.upper_offset, c.nh_offset, c.count), (IpProtocol::UDP, 40, 6, 0));
        assert!(c.fragment.is_none() && c.routing.is_none() && !c.hop_by_hop);
    }

    #[test]
    fn linux_mld_report_hop_by_hop_is_walked() {
        // Linux's MLDv2 report: HBH with router alert 0 and PadN(0).
        let hbh = [0x3a, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00];
        assert_eq!(hbh, router_alert_hop_by_hop(IpProtocol::ICMPV6));
        let mut rest = hbh.to_vec();
        rest.extend_from_slice(&[0x8f, 0, 0, 0, 0, 0, 0, 0]);
        let b = pkt(IpProtocol::HOPOPT, &rest);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let hs: Vec<_> = p.ext_headers().map(Result::unwrap).collect();
        assert_eq!(hs.len(), 1);
        assert_eq!((hs[0].kind, hs[0].offset, hs[0].next_header()), (IpProtocol::HOPOPT, 40, IpProtocol::ICMPV6));
        let opts: Vec<_> = hs[0].options().unwrap().map(Result::unwrap).collect();
        assert_eq!(opts.len(), 2);
        assert_eq!((opts[0].kind, opts[0].offset, opts[0].data), (5, 42, &[0u8, 0][..]));
        assert_eq!((opts[1].kind, opts[1].offset, opts[1].data.len()), (1, 46, 0));
        assert_eq!(router_alert(&hbh[2..]), Some(0));
        let c = walk(&b).unwrap();
        assert_eq!((c.upper, c.upper_offset, c.nh_offset, c.hop_by_hop), (IpProtocol::ICMPV6, 48, 40, true));
        let h = OptionsHeader::new_checked(&hbh[..]).unwrap();
        let r = OptionsRepr::parse(&h).unwrap();
        let mut out = [0u8; 8];
        r.emit(&mut out);
        assert_eq!(out, hbh);
    }

    #[test]
    fn hop_by_hop_after_another_header_points_at_the_naming_field() {
        // Dest opts (empty, PadN 4) naming hop-by-hop.
        let rest = [0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        let e = walk(&pkt(IpProtocol::IPV6_OPTS, &rest)).unwrap_err();
        assert_eq!((e.kind, e.header, e.offset), (ExtErrorKind::HopByHopNotFirst, IpProtocol::HOPOPT, 40));
        assert_eq!(e.param_problem(), Some((ParamProblem::UnrecognizedNextHeader, 40)));
        // Hop-by-hop twice: the second names... the same error.
        let rest = [0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        let e = walk(&pkt(IpProtocol::HOPOPT, &rest)).unwrap_err();
        assert_eq!((e.kind, e.offset), (ExtErrorKind::HopByHopNotFirst, 40));
    }

    #[test]
    fn every_option_length_edge() {
        // Pad1s only.
        assert_eq!(check_options(&[0; 6], 0), Ok(()));
        // PadN exactly filling.
        assert_eq!(check_options(&[1, 4, 0, 0, 0, 0], 0), Ok(()));
        // PadN one byte too long.
        assert_eq!(check_options(&[1, 5, 0, 0, 0, 0], 42), Err(OptionError { offset: 43 }));
        // Type as the last byte: its length is missing.
        assert_eq!(check_options(&[0, 0, 0, 0, 0, 1], 0), Err(OptionError { offset: 6 }));
        // Router alert of length 3 (must be 2) and 1.
        assert_eq!(check_options(&[5, 3, 0, 0, 0, 1], 0), Err(OptionError { offset: 1 }));
        assert_eq!(check_options(&[5, 1, 0, 1, 1, 0], 0), Err(OptionError { offset: 1 }));
        // Jumbo must be 4.
        assert_eq!(check_options(&[0xc2, 4, 0, 1, 0, 0], 0), Ok(()));
        assert_eq!(check_options(&[0xc2, 2, 0, 1, 1, 0], 0), Err(OptionError { offset: 1 }));
        // An unknown option of length 0 is fine.
        assert_eq!(check_options(&[0x3e, 0, 1, 2, 0, 0], 0), Ok(()));
        // The chain walker reports it with the packet offset.
        let rest = [17, 0, 1, 5, 0, 0, 0, 0];
        let e = walk(&pkt(IpProtocol::HOPOPT, &rest)).unwrap_err();
        assert_eq!((e.kind, e.header, e.offset), (ExtErrorKind::BadOption, IpProtocol::HOPOPT, 43));
        assert_eq!(e.param_problem(), Some((ParamProblem::ErroneousHeader, 43)));
    }

    #[test]
    fn unknown_option_actions_follow_the_high_bits() {
        assert_eq!(UnknownOptionAction::of(0x1e), UnknownOptionAction::Skip);
        assert_eq!(UnknownOptionAction::of(0x5e), UnknownOptionAction::Discard);
        assert_eq!(UnknownOptionAction::of(0x9e), UnknownOptionAction::DiscardSendIcmp);
        assert_eq!(UnknownOptionAction::of(0xde), UnknownOptionAction::DiscardSendIcmpUnlessMulticast);
        let rest = [17, 0, 0x9e, 0, 0x3e, 0, 0, 0];
        let b = pkt(IpProtocol::IPV6_OPTS, &rest);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        let h = p.ext_headers().next().unwrap().unwrap();
        let o: Vec<_> = h.options().unwrap().map(Result::unwrap).collect();
        assert_eq!((o[0].offset, o[0].unknown_action()), (42, UnknownOptionAction::DiscardSendIcmp));
        assert!(o[1].may_change() && !o[0].may_change() && o[2].is_padding());
    }

    #[test]
    fn routing_header_type0_is_identified_with_segments_left() {
        // RH0 with one address, segments left 1, then UDP.
        let mut rest = vec![17, 2, 0, 1, 0, 0, 0, 0];
        rest.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        rest.extend_from_slice(&UDP8);
        let b = pkt(IpProtocol::IPV6_ROUTE, &rest);
        let c = walk(&b).unwrap();
        assert_eq!((c.routing, c.upper, c.upper_offset, c.nh_offset), (Some(40), IpProtocol::UDP, 64, 40));
        assert_eq!(c.bad_routing, Some(42));
        // Segments left 0 is refused as well (ip6_check_rh0hdr).
        let mut z = b.clone();
        z[43] = 0;
        assert_eq!(walk(&z).unwrap().bad_routing, Some(42));
        // A type 2 routing header is fine ...
        let mut t2 = b.clone();
        t2[42] = routing_type::TYPE2;
        assert_eq!(walk(&t2).unwrap().bad_routing, None);
        // ... but not two routing headers: the pointer is the second one.
        let mut two = vec![IpProtocol::IPV6_ROUTE.0, 0, routing_type::TYPE2, 0, 0, 0, 0, 0];
        two.extend_from_slice(&[17, 0, routing_type::SEGMENT_ROUTING, 0, 0, 0, 0, 0]);
        two.extend_from_slice(&UDP8);
        let c = walk(&pkt(IpProtocol::IPV6_ROUTE, &two)).unwrap();
        assert_eq!((c.routing, c.bad_routing, c.upper_offset), (Some(40), Some(48), 56));
        let rh = RoutingHeader::new_checked(&b[40..64]).unwrap();
        assert!(rh.is_type0());
        assert_eq!((rh.segments_left(), rh.header_len(), rh.data().len()), (1, 24, 20));
        let r = RoutingRepr::parse(&rh).unwrap();
        let mut out = [0u8; 24];
        r.emit(&mut out);
        assert_eq!(&out[..], &b[40..64]);
        assert_eq!(40 + ROUTING_TYPE_OFFSET, 42);
        // A routing header whose length runs past the packet.
        let e = walk(&pkt(IpProtocol::IPV6_ROUTE, &rest[..20])).unwrap_err();
        assert_eq!((e.kind, e.header, e.offset), (ExtErrorKind::Truncated, IpProtocol::IPV6_ROUTE, 40));
        assert_eq!(RoutingHeader::new_checked(&rest[..7]).unwrap_err(), WireError::Truncated);
    }

    fn frag(nh: u8, off: u16, m: bool, id: u32) -> [u8; 8] {
        let mut f = [0u8; 8];
        FragmentRepr { next_header: IpProtocol(nh), frag_offset: off, more_frags: m, ident: id }.emit(&mut f);
        f
    }

    #[test]
    fn first_fragment_must_hold_the_whole_chain() {
        // First fragment: frag, then dest opts that run past the packet.
        let mut rest = frag(60, 0, true, 1).to_vec();
        rest.extend_from_slice(&[17, 1, 1, 4, 0, 0, 0, 0]); // says 16 bytes, has 8
        let e = walk(&pkt(IpProtocol::IPV6_FRAG, &rest)).unwrap_err();
        assert_eq!((e.kind, e.header, e.offset), (ExtErrorKind::IncompleteChain, IpProtocol::IPV6_OPTS, 0));
        assert_eq!(e.param_problem(), Some((ParamProblem::IncompleteChain, 0)));
        // First fragment with nothing after the fragment header.
        let e = walk(&pkt(IpProtocol::IPV6_FRAG, &frag(17, 0, true, 1))).unwrap_err();
        assert_eq!(e.kind, ExtErrorKind::IncompleteChain);
        // The same truncation in an unfragmented packet is Truncated.
        let e = walk(&pkt(IpProtocol::IPV6_OPTS, &rest[8..])).unwrap_err();
        assert_eq!((e.kind, e.offset), (ExtErrorKind::Truncated, 40));
        assert_eq!(e.param_problem(), None);
    }

    #[test]
    fn later_fragment_stops_at_the_fragment_header() {
        let mut rest = frag(6, 1232, false, 7).to_vec();
        rest.extend_from_slice(&[0xab; 20]);
        let c = walk(&pkt(IpProtocol::IPV6_FRAG, &rest)).unwrap();
        assert!(c.is_later_fragment() && c.is_fragment());
        assert_eq!((c.upper, c.upper_offset, c.fragment.unwrap().0), (IpProtocol::TCP, 48, 40));
        // An atomic fragment is not a fragment for reassembly.
        let mut rest = frag(17, 0, false, 7).to_vec();
        rest.extend_from_slice(&UDP8);
        let c = walk(&pkt(IpProtocol::IPV6_FRAG, &rest)).unwrap();
        assert!(!c.is_fragment() && !c.is_later_fragment());
        assert_eq!((c.upper, c.upper_offset, c.nh_offset), (IpProtocol::UDP, 48, 40));
    }

    #[test]
    fn fragment_length_and_overflow_are_parameter_problems() {
        // M set, 12 data bytes: pointer to the payload length field.
        let mut rest = frag(17, 0, true, 1).to_vec();
        rest.extend_from_slice(&[0; 12]);
        let e = walk(&pkt(IpProtocol::IPV6_FRAG, &rest)).unwrap_err();
        assert_eq!((e.kind, e.offset), (ExtErrorKind::FragmentLength, 4));
        assert_eq!(e.param_problem(), Some((ParamProblem::ErroneousHeader, 4)));
        // Last fragment at offset 65528 with 16 bytes: past 65535.
        let mut rest = frag(17, 65528, false, 1).to_vec();
        rest.extend_from_slice(&[0; 16]);
        let e = walk(&pkt(IpProtocol::IPV6_FRAG, &rest)).unwrap_err();
        assert_eq!((e.kind, e.header, e.offset), (ExtErrorKind::FragmentOverflow, IpProtocol::IPV6_FRAG, 42));
        // Exactly 65535 is fine.
        let mut rest = frag(17, 65528, false, 1).to_vec();
        rest.extend_from_slice(&[0; 7]);
        assert!(walk(&pkt(IpProtocol::IPV6_FRAG, &rest)).is_ok());
        // In a cut quote the data length says nothing: no length checks.
        let mut rest = frag(17, 0, true, 1).to_vec();
        rest.extend_from_slice(&[0; 20]);
        let b = pkt(IpProtocol::IPV6_FRAG, &rest);
        let q = Ipv6Packet::new_quoted(&b[..60]).unwrap();
        let c = q.ext_headers().walk().unwrap();
        assert_eq!((c.upper, c.upper_offset), (IpProtocol::UDP, 48));
        // And a chain cut inside a quoted first fragment is Truncated.
        let q = Ipv6Packet::new_quoted(&b[..44]).unwrap();
        assert_eq!(q.ext_headers().walk().unwrap_err().kind, ExtErrorKind::Truncated);
    }

    #[test]
    fn ah_is_passed_over_and_esp_ends_the_chain() {
        // AH with payload len 4 (24 bytes), then ESP.
        let mut rest = vec![50, 4, 0, 0];
        rest.extend_from_slice(&[0xaa; 20]);
        rest.extend_from_slice(&[0xee; 16]);
        let c = walk(&pkt(IpProtocol::AH, &rest)).unwrap();
        assert_eq!((c.upper, c.upper_offset, c.nh_offset, c.count), (IpProtocol::ESP, 64, 40, 1));
        let e = walk(&pkt(IpProtocol::AH, &rest[..20])).unwrap_err();
        assert_eq!((e.kind, e.header), (ExtErrorKind::Truncated, IpProtocol::AH));
        // No next header ends the chain with nothing after it.
        let c = walk(&pkt(IpProtocol::IPV6_NONXT, &[])).unwrap();
        assert_eq!((c.upper, c.upper_offset), (IpProtocol::IPV6_NONXT, 40));
    }

    #[test]
    fn too_many_headers_are_refused() {
        let mut rest = Vec::new();
        for _ in 0..MAX_EXT_HEADERS {
            rest.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        rest.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        let e = walk(&pkt(IpProtocol::IPV6_OPTS, &rest)).unwrap_err();
        assert_eq!((e.kind, e.offset), (ExtErrorKind::TooManyHeaders, 40 + 8 * MAX_EXT_HEADERS));
        let n = rest.len();
        rest[n - 16] = 17;
        let c = walk(&pkt(IpProtocol::IPV6_OPTS, &rest[..n - 8])).unwrap();
        assert_eq!(c.count, MAX_EXT_HEADERS);
    }

    #[test]
    fn header_missing_its_length_byte_is_truncated() {
        let e = walk(&pkt(IpProtocol::IPV6_OPTS, &[17])).unwrap_err();
        assert_eq!((e.kind, e.offset), (ExtErrorKind::Truncated, 40));
        let e = walk(&pkt(IpProtocol::IPV6_FRAG, &[17, 0, 0, 0])).unwrap_err();
        assert_eq!((e.kind, e.header), (ExtErrorKind::Truncated, IpProtocol::IPV6_FRAG));
        let e = walk(&pkt(IpProtocol::HOPOPT, &[])).unwrap_err();
        assert_eq!(e.kind, ExtErrorKind::Truncated);
        assert_eq!(OptionsHeader::new_checked(&[17u8, 1, 0, 0, 0, 0, 0, 0][..]).unwrap_err(), WireError::Truncated);
    }

    proptest! {
        #[test]
        fn walker_never_panics_and_offsets_stay_inside(first in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..200)) {
            let b = pkt(IpProtocol(first), &rest);
            let p = Ipv6Packet::new_checked(&b[..]).unwrap();
            let mut it = p.ext_headers();
            let mut last_end = 40;
            for h in it.by_ref() {
                match h {
                    Ok(h) => {
                        prop_assert_eq!(h.offset, last_end);
                        last_end = h.offset + h.bytes.len();
                        prop_assert!(last_end <= b.len());
                        if let Some(o) = h.options() { for x in o { prop_assert!(x.is_ok()); } }
                        let _ = (h.routing().map(|r| r.segments_left()), h.fragment());
                    }
                    Err(e) => prop_assert!(e.offset <= b.len()),
                }
            }
            if let Some(c) = it.summary() {
                prop_assert_eq!(c.upper_offset, last_end);
                prop_assert!(c.nh_offset < c.upper_offset);
            }
        }

        /// Chains built from random headers (hop-by-hop only first) walk to
        /// exactly what was built: each header's offset, the upper layer,
        /// the byte that names it, the fragment and routing offsets.
        #[test]
        fn built_chains_walk_to_what_was_built(
            hbh in any::<bool>(),
            kinds in proptest::collection::vec((0u8..4, 0u8..4), 0..8),
            upper in prop_oneof![Just(6u8), Just(17), Just(58), Just(50), Just(59), Just(132)],
        ) {
            let mut spec: Vec<(IpProtocol, usize)> = Vec::new();
            if hbh { spec.push((IpProtocol::HOPOPT, 8)); }
            for (k, n) in &kinds {
                let n = *n as usize;
                spec.push(match k {
                    0 => (IpProtocol::IPV6_OPTS, 8 * (n + 1)),
                    1 => (IpProtocol::IPV6_ROUTE, 8 * (n + 1)),
                    2 => (IpProtocol::IPV6_FRAG, 8),
                    _ => (IpProtocol::AH, 4 * (n + 3)),
                });
            }
            let mut body = Vec::new();
            let mut offsets = Vec::new();
            for (i, &(kind, len)) in spec.iter().enumerate() {
                let next = spec.get(i + 1).map_or(upper, |s| s.0 .0);
                let at = body.len();
                offsets.push(40 + at);
                body.resize(at + len, 0);
                let h = &mut body[at..];
                h[0] = next;
                match kind {
                    IpProtocol::IPV6_FRAG => {}
                    IpProtocol::AH => h[1] = (len / 4 - 2) as u8,
                    _ => {
                        h[1] = (len / 8 - 1) as u8;
                        if kind != IpProtocol::IPV6_ROUTE {
                            pad_options(&mut h[2..len]);
                        }
                    }
                }
            }
            body.extend_from_slice(&[0u8; 8]);
            let first = spec.first().map_or(IpProtocol(upper), |s| s.0);
            let b = pkt(first, &body);
            let p = Ipv6Packet::new_checked(&b[..]).unwrap();
            let got: Vec<(IpProtocol, usize)> = p.ext_headers().map(|h| { let h = h.unwrap(); (h.kind, h.offset) }).collect();
            let want: Vec<(IpProtocol, usize)> = spec.iter().zip(&offsets).map(|(s, &o)| (s.0, o)).collect();
            prop_assert_eq!(got, want);
            let c = walk(&b).unwrap();
            prop_assert_eq!(c.upper, IpProtocol(upper));
            prop_assert_eq!(c.upper_offset, b.len() - 8);
            prop_assert_eq!(c.nh_offset, offsets.last().copied().unwrap_or(6));
            prop_assert_eq!(c.count, spec.len());
            prop_assert_eq!(c.hop_by_hop, hbh);
            let frag = spec.iter().position(|s| s.0 == IpProtocol::IPV6_FRAG).map(|i| offsets[i]);
            prop_assert_eq!(c.fragment.map(|f| f.0), spec.iter().rposition(|s| s.0 == IpProtocol::IPV6_FRAG).map(|i| offsets[i]));
            prop_assert!(frag.is_none() || !c.is_fragment());
            prop_assert_eq!(c.routing, spec.iter().position(|s| s.0 == IpProtocol::IPV6_ROUTE).map(|i| offsets[i]));
            // The routing headers built here have type 0 (zeroed bytes).
            prop_assert_eq!(c.bad_routing, c.routing.map(|o| o + ROUTING_TYPE_OFFSET));
        }

    }
}
