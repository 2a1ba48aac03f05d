//! Hop-by-hop and destination options headers and their option TLVs
//! (RFC 8200 §4.2, §4.3, §4.6).

use crate::ipv4::IpProtocol;
use crate::{get16, put16, WireError};

/// A hop-by-hop or destination options header: next header, length in
/// 8-byte units beyond the first, then options (RFC 8200 §4.3, §4.6).
#[derive(Debug, Clone)]
pub struct OptionsHeader<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> OptionsHeader<T> {
    pub const fn new_unchecked(buf: T) -> Self {
        OptionsHeader { buf }
    }

    /// Checks the two fixed bytes and the whole header are in the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < 2 || (b[1] as usize + 1) * 8 > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(OptionsHeader { buf })
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[0])
    }

    /// The header length in bytes ((length field + 1) × 8).
    pub fn header_len(&self) -> usize {
        (self.buf.as_ref()[1] as usize + 1) * 8
    }

    /// The options area (after the two fixed bytes).
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[2..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> OptionsHeader<T> {
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buf.as_mut()[0] = p.0;
    }
    /// Sets the length field from a length in bytes (a multiple of 8, ≥ 8).
    pub fn set_header_len(&mut self, len: usize) {
        self.buf.as_mut()[1] = (len / 8 - 1) as u8;
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buf.as_mut()[2..h]
    }
}

/// A hop-by-hop or destination options header, borrowing its options.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct OptionsRepr<'a> {
    pub next_header: IpProtocol,
    /// The options area, padding included: 6 + 8k bytes.
    pub options: &'a [u8],
}

impl<'a> OptionsRepr<'a> {
    /// Parses a checked header; a malformed option is `Malformed`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(h: &OptionsHeader<&'a T>) -> Result<Self, WireError> {
        let b: &'a [u8] = T::as_ref(h.buf);
        let options = &b[2..h.header_len()];
        check_options(options, 2).map_err(|_| WireError::Malformed)?;
        Ok(OptionsRepr { next_header: h.next_header(), options })
    }

    pub fn header_len(&self) -> usize {
        2 + self.options.len()
    }

    /// Writes the header. Panics if `options.len()` is not 6 + 8k or `buf`
    /// is shorter than `header_len()`.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.header_len();
        assert!(len.is_multiple_of(8) && len <= 2048, "options area must be 6 + 8k bytes");
        let mut h = OptionsHeader::new_unchecked(&mut buf[..len]);
        h.set_next_header(self.next_header);
        h.set_header_len(len);
        h.options_mut().copy_from_slice(self.options);
    }
}

/// The hop-by-hop header Linux and OpenBSD put on MLD messages: a router
/// alert with value 0 (MLD, RFC 2711) and a two-byte PadN.
pub const fn router_alert_hop_by_hop(next_header: IpProtocol) -> [u8; 8] {
    [next_header.0, 0, option_type::ROUTER_ALERT, 2, 0, 0, option_type::PADN, 0]
}

/// Option types (RFC 8200 §4.2, IANA "Destination Options and Hop-by-Hop
/// Options"). The two high bits say what to do with an unknown option, the
/// third whether its data may change en route.
pub mod option_type {
    pub const PAD1: u8 = 0x00;
    pub const PADN: u8 = 0x01;
    /// Tunnel encapsulation limit (RFC 2473), destination options.
    pub const TUNNEL_LIMIT: u8 = 0x04;
    /// Router alert (RFC 2711): value 0 is MLD.
    pub const ROUTER_ALERT: u8 = 0x05;
    /// Jumbo payload (RFC 2675).
    pub const JUMBO: u8 = 0xC2;
    /// Home address (RFC 6275), destination options.
    pub const HOME_ADDRESS: u8 = 0xC9;
}

/// What a node must do with an option it does not recognize: the two high
/// bits of the option type (RFC 8200 §4.2).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum UnknownOptionAction {
    /// 00: skip the option and keep processing the header.
    Skip,
    /// 01: discard the packet.
    Discard,
    /// 10: discard and send a parameter problem, code 2, pointing at the
    /// option type, whatever the destination.
    DiscardSendIcmp,
    /// 11: as 10, but only if the destination was not multicast.
    DiscardSendIcmpUnlessMulticast,
}

impl UnknownOptionAction {
    pub fn of(option_type: u8) -> UnknownOptionAction {
        match option_type >> 6 {
            0 => UnknownOptionAction::Skip,
            1 => UnknownOptionAction::Discard,
            2 => UnknownOptionAction::DiscardSendIcmp,
            _ => UnknownOptionAction::DiscardSendIcmpUnlessMulticast,
        }
    }
}

/// One option from [`options`].
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct Ipv6Option<'a> {
    /// The option type.
    pub kind: u8,
    /// Offset of the option type byte (from `base`, see [`options`]).
    pub offset: usize,
    /// The option data (empty for Pad1).
    pub data: &'a [u8],
}

impl Ipv6Option<'_> {
    /// What to do if this option is not recognized.
    pub fn unknown_action(&self) -> UnknownOptionAction {
        UnknownOptionAction::of(self.kind)
    }

    /// The option's data may change en route (third-highest bit).
    pub fn may_change(&self) -> bool {
        self.kind & 0x20 != 0
    }

    /// Pad1 or PadN.
    pub fn is_padding(&self) -> bool {
        self.kind == option_type::PAD1 || self.kind == option_type::PADN
    }
}

/// A malformed option: `offset` points at its length byte (for a length
/// that runs past the header, or the wrong length for a known option).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("bad IPv6 option length at offset {offset}")]
pub struct OptionError {
    pub offset: usize,
}

/// Iterates over an options area. `base` is added to every offset (2 plus
/// the header's offset in the packet gives packet offsets). Yields one
/// error and stops on a malformed option. Known options with a fixed
/// length (router alert 2, jumbo payload 4) are checked.
pub fn options(opts: &[u8], base: usize) -> Options<'_> {
    Options { opts, pos: 0, base, done: false }
}

/// Iterator returned by [`options`].
#[derive(Debug, Clone)]
pub struct Options<'a> {
    opts: &'a [u8],
    pos: usize,
    base: usize,
    done: bool,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<Ipv6Option<'a>, OptionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.opts.len() {
            return None;
        }
        let at = self.pos;
        let kind = self.opts[at];
        if kind == option_type::PAD1 {
            self.pos += 1;
            return Some(Ok(Ipv6Option { kind, offset: self.base + at, data: &[] }));
        }
        let bad = Some(Err(OptionError { offset: self.base + at + 1 }));
        let Some(&len) = self.opts.get(at + 1) else {
            self.done = true;
            return bad;
        };
        let len = len as usize;
        let fixed = match kind {
            option_type::ROUTER_ALERT => Some(2),
            option_type::JUMBO => Some(4),
            _ => None,
        };
        if at + 2 + len > self.opts.len() || fixed.is_some_and(|f| f != len) {
            self.done = true;
            return bad;
        }
        self.pos += 2 + len;
        Some(Ok(Ipv6Option { kind, offset: self.base + at, data: &self.opts[at + 2..at + 2 + len] }))
    }
}

/// Walks the options area; the first malformed option's error.
pub fn check_options(opts: &[u8], base: usize) -> Result<(), OptionError> {
    for o in options(opts, base) {
        o?;
    }
    Ok(())
}

/// The router alert value, if the options carry one (RFC 2711). Stops
/// quietly at a malformed option.
pub fn router_alert(opts: &[u8]) -> Option<u16> {
    options(opts, 0).map_while(Result::ok).find(|o| o.kind == option_type::ROUTER_ALERT).map(|o| get16(o.data, 0))
}

/// An option to emit.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum Ipv6OptionRepr<'a> {
    Pad1,
    /// PadN with this many zero data bytes.
    PadN(u8),
    RouterAlert(u16),
    Other {
        kind: u8,
        data: &'a [u8],
    },
}

impl<'a> Ipv6OptionRepr<'a> {
    pub fn parse(o: &Ipv6Option<'a>) -> Self {
        match o.kind {
            option_type::PAD1 => Ipv6OptionRepr::Pad1,
            option_type::PADN if o.data.len() <= u8::MAX as usize => Ipv6OptionRepr::PadN(o.data.len() as u8),
            option_type::ROUTER_ALERT if o.data.len() == 2 => Ipv6OptionRepr::RouterAlert(get16(o.data, 0)),
            kind => Ipv6OptionRepr::Other { kind, data: o.data },
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            Ipv6OptionRepr::Pad1 => 1,
            Ipv6OptionRepr::PadN(n) => 2 + *n as usize,
            Ipv6OptionRepr::RouterAlert(_) => 4,
            Ipv6OptionRepr::Other { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buf`; returns its length. Panics
    /// if `buf` is too short or `Other` data is over 255 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = self.buffer_len();
        match *self {
            Ipv6OptionRepr::Pad1 => buf[0] = option_type::PAD1,
            Ipv6OptionRepr::PadN(len) => {
                buf[0] = option_type::PADN;
                buf[1] = len;
                buf[2..n].fill(0);
            }
            Ipv6OptionRepr::RouterAlert(v) => {
                buf[0] = option_type::ROUTER_ALERT;
                buf[1] = 2;
                put16(buf, 2, v);
            }
            Ipv6OptionRepr::Other { kind, data } => {
                buf[0] = kind;
                buf[1] = u8::try_from(data.len()).expect("option data over 255 bytes");
                buf[2..n].copy_from_slice(data);
            }
        }
        n
    }
}

/// Fills `buf` with padding: nothing, one Pad1, or one PadN.
pub fn pad_options(buf: &mut [u8]) {
    match buf.len() {
        0 => {}
        1 => buf[0] = option_type::PAD1,
        n => {
            Ipv6OptionRepr::PadN((n - 2) as u8).emit(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn options_emit_and_pad() {
        let mut b = [0u8; 14];
        let mut at = Ipv6OptionRepr::RouterAlert(0).emit(&mut b);
        at += Ipv6OptionRepr::Other { kind: 0x1e, data: &[9] }.emit(&mut b[at..]);
        pad_options(&mut b[at..]);
        let got: Vec<_> = options(&b, 0).map(|o| Ipv6OptionRepr::parse(&o.unwrap())).collect();
        assert_eq!(
            got,
            [Ipv6OptionRepr::RouterAlert(0), Ipv6OptionRepr::Other { kind: 0x1e, data: &[9] }, Ipv6OptionRepr::PadN(5)]
        );
        let mut one = [9u8];
        pad_options(&mut one);
        assert_eq!(one, [0]);
    }

    proptest! {
        #[test]
        fn options_round_trip(kinds in proptest::collection::vec((2u8..=255, proptest::collection::vec(any::<u8>(), 0..10)), 0..5)) {
            let reprs: Vec<Ipv6OptionRepr> = kinds.iter()
                .filter(|(k, _)| *k != option_type::ROUTER_ALERT && *k != option_type::JUMBO)
                .map(|(k, d)| Ipv6OptionRepr::Other { kind: *k, data: d }).collect();
            let mut b = vec![0u8; reprs.iter().map(|r| r.buffer_len()).sum::<usize>()];
            let mut at = 0;
            for r in &reprs { at += r.emit(&mut b[at..]); }
            let got: Vec<_> = options(&b, 0).map(|o| Ipv6OptionRepr::parse(&o.unwrap())).collect();
            prop_assert_eq!(got, reprs);
        }
    }
}
