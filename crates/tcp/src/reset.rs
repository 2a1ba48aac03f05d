//! The RST that answers a segment for which there is no connection
//! (RFC 9293 §3.10.7.1; OpenBSD tcp_respond from tcp_input's dropwithreset).
//! The socket layer sends it for segments that match no PCB.

use softnet_wire::tcp::{TcpFlags, TcpRepr};

/// SEG.LEN: payload plus one for each of SYN and FIN.
pub fn seg_len(seg: &TcpRepr) -> usize {
    seg.payload_len + usize::from(seg.flags.contains(TcpFlags::SYN)) + usize::from(seg.flags.contains(TcpFlags::FIN))
}

/// The reply to `seg`, ports swapped: none to a RST; `<SEQ=SEG.ACK><CTL=RST>`
/// to an ACK; else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
pub fn reset_reply(seg: &TcpRepr) -> Option<TcpRepr> {
    if seg.flags.contains(TcpFlags::RST) {
        return None;
    }
    let (seq, ack, flags) = if seg.flags.contains(TcpFlags::ACK) {
        (seg.ack, 0, TcpFlags::RST)
    } else {
        (0, seg.seq.wrapping_add(seg_len(seg) as u32), TcpFlags::RST | TcpFlags::ACK)
    };
    Some(TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        seq,
        ack,
        flags,
        window: 0,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: TcpFlags, payload_len: usize) -> TcpRepr {
        TcpRepr {
            src_port: 1234,
            dst_port: 80,
            seq: 1000,
            ack: 5000,
            flags,
            window: 100,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len,
        }
    }

    #[test]
    fn answers_as_rfc9293_says() {
        assert_eq!(reset_reply(&seg(TcpFlags::RST, 0)), None);
        let r = reset_reply(&seg(TcpFlags::ACK, 10)).unwrap();
        assert_eq!((r.flags, r.seq, r.src_port, r.dst_port), (TcpFlags::RST, 5000, 80, 1234));
        let r = reset_reply(&seg(TcpFlags::SYN, 0)).unwrap();
        assert_eq!((r.flags, r.seq, r.ack), (TcpFlags::RST | TcpFlags::ACK, 0, 1001));
        let r = reset_reply(&seg(TcpFlags::SYN | TcpFlags::FIN, 5)).unwrap();
        assert_eq!(r.ack, 1007, "SYN and FIN count in SEG.LEN");
    }
}
