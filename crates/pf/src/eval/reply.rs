//! pf_send_tcp / pf_send_icmp: the RST and ICMP errors of `block return`.

use super::*;

/// `block return…`: a RST for TCP, an ICMP unreachable otherwise.
pub(super) fn send_return(
    cx: &Cx,
    r: &CRule,
    how: BlockAction,
    pd: &Pd,
    pkt: &PacketBuf,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    let data = pkt.data();
    let (rst, icmp_code, ttl) = match how {
        BlockAction::Drop => return,
        BlockAction::Return => (pd.proto == PROTO_TCP, icmpv4::DstUnreachable::PortUnreachable as u8, 0),
        BlockAction::ReturnRst { ttl } => (true, 0, ttl),
        BlockAction::ReturnIcmp { code, .. } => (false, code, 0),
    };
    let _ = r;
    if rst {
        if pd.proto != PROTO_TCP || pd.tcp.flags & TH_RST != 0 {
            return;
        }
        let l4 = &data[pd.hlen()..pd.tot_len()];
        if !TcpPacket::new_unchecked(l4).verify_checksum(pd.src4(), pd.dst4()) {
            cx.count(Reason::ProtoCksum);
            return;
        }
        let s = pd.tcp;
        let (seq, ack, flags) = rst_numbers(&s);
        let ttl = if ttl == 0 { DEFAULT_TTL } else { ttl };
        if let Some(p) = build_tcp(bufs, pd.dst4(), pd.src4(), pd.dport, pd.sport, seq, ack, flags, 0, ttl) {
            replies.push(p);
        }
        return;
    }
    // ICMP errors are not sent about ICMP errors, non-first fragments
    // (never seen here: reassembled), or broadcast/multicast.
    if pd.proto == PROTO_ICMP && icmpv4::is_error(pd.icmp_type) {
        return;
    }
    if pd.dst4().is_broadcast() || pd.dst4().is_multicast() || pd.src4().is_broadcast() || pd.src4().is_multicast() {
        return;
    }
    let l4 = &data[pd.hlen()..pd.tot_len()];
    let ck_ok = match pd.proto {
        PROTO_TCP => TcpPacket::new_unchecked(l4).verify_checksum(pd.src4(), pd.dst4()),
        PROTO_UDP => {
            let u = UdpPacket::new_unchecked(l4);
            u.checksum() == 0 || u.verify_checksum(pd.src4(), pd.dst4())
        }
        _ => true,
    };
    if !ck_ok {
        cx.count(Reason::ProtoCksum);
        return;
    }
    let src = cx.ifp.source_for(pd.src4()).unwrap_or(pd.dst4());
    if let Some(p) = build_icmp_unreach(bufs, src, pd.src4(), icmp_code, &data[..pd.tot_len()], pd.hlen()) {
        replies.push(p);
    }
}

/// Sequence numbers of a RST answering segment `s`: with an ACK the RST
/// takes its sequence number from the ACK field (RFC 9293 3.10.7.1);
/// otherwise it has sequence 0 and acknowledges everything the segment
/// occupied. pf sets ACK on both.
pub fn rst_numbers(s: &TcpSeg) -> (u32, u32, u8) {
    let mut ack = s.seq.wrapping_add(s.len);
    if s.flags & TH_SYN != 0 {
        ack = ack.wrapping_add(1);
    }
    if s.flags & TH_FIN != 0 {
        ack = ack.wrapping_add(1);
    }
    let seq = if s.flags & TH_ACK != 0 { s.ack } else { 0 };
    (seq, ack, TH_RST | TH_ACK)
}

/// An IPv4 + TCP segment without payload (pf_send_tcp).
#[allow(clippy::too_many_arguments)]
pub fn build_tcp(
    bufs: &mut dyn BufferSource,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    ttl: u8,
) -> Option<PacketBuf> {
    build_tcp_opts(bufs, src, dst, sport, dport, seq, ack, flags, win, ttl, None)
}

/// `build_tcp` with pf_send_tcp's MSS option (`synproxy state`'s SYNs).
#[allow(clippy::too_many_arguments)]
pub fn build_tcp_opts(
    bufs: &mut dyn BufferSource,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    ttl: u8,
    mss: Option<u16>,
) -> Option<PacketBuf> {
    let mut p = bufs.alloc()?;
    let tr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags: TcpFlags::from_bits(flags),
        window: win,
        max_seg_size: mss,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let ir = Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::TCP,
        ttl,
        tos: 0,
        ident: (seq ^ ack) as u16,
        dont_frag: false,
        payload_len: tr.buffer_len(),
    };
    if p.rewind(ir.buffer_len()).is_err() {
        bufs.free(p);
        return None;
    }
    let d = p.data_mut();
    ir.emit(&mut d[..20]);
    tr.emit_with_payload(&mut d[20..], src, dst, &[]);
    // pf_send_tcp: PF_TAG_GENERATED, so pf out lets it by untested.
    p.meta.flags |= mflags::PF_GENERATED;
    Some(p)
}

/// An ICMP destination unreachable quoting the offending packet's header
/// and the first 8 bytes of its payload.
pub(super) fn build_icmp_unreach(
    bufs: &mut dyn BufferSource,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    code: u8,
    orig: &[u8],
    orig_hlen: usize,
) -> Option<PacketBuf> {
    let quote = &orig[..(orig_hlen + 8).min(orig.len())];
    let icmp_len = icmpv4::HEADER_LEN + quote.len();
    let mut p = bufs.alloc()?;
    let ir = Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::ICMP,
        ttl: DEFAULT_TTL,
        tos: 0,
        ident: u16::from_be_bytes([orig[4], orig[5]]).rotate_left(3),
        dont_frag: false,
        payload_len: icmp_len,
    };
    if p.rewind(ir.buffer_len()).is_err() {
        bufs.free(p);
        return None;
    }
    let d = p.data_mut();
    ir.emit(&mut d[..20]);
    let mut ic = Icmpv4Packet::new_unchecked(&mut d[20..20 + icmp_len]);
    ic.set_msg_type(icmpv4::msg_type::DST_UNREACHABLE);
    ic.set_code(code);
    ic.set_rest_of_header([0; 4]);
    ic.data_mut()[..quote.len()].copy_from_slice(quote);
    ic.fill_checksum();
    // pf_send_icmp: PF_TAG_GENERATED, as for the RST.
    p.meta.flags |= mflags::PF_GENERATED;
    Some(p)
}
