//! Frame builders shared by the data path and the control thread.

use crate::packet::{BufferTooSmall, PacketBuf};
use softnet_wire::arp::ArpRepr;
use softnet_wire::ethernet::{EtherType, EthernetRepr, MacAddr, HEADER_LEN};

/// Writes an Ethernet header carrying an ARP message into `p` (replacing
/// its contents).
pub fn build_arp_frame(p: &mut PacketBuf, src: MacAddr, dst: MacAddr, arp: &ArpRepr) -> Result<(), BufferTooSmall> {
    // ARP frames are padded to the 60-byte Ethernet minimum.
    let len = (HEADER_LEN + ArpRepr::LEN).max(60);
    p.rewind(len)?;
    let buf = p.data_mut();
    buf.fill(0);
    EthernetRepr { src, dst, ethertype: EtherType::ARP, vlan: None }.emit(buf);
    arp.emit(&mut buf[HEADER_LEN..HEADER_LEN + ArpRepr::LEN]);
    Ok(())
}

/// Prepends an Ethernet header for an IPv4 packet that starts at `data()`;
/// the destination is filled in later (after ARP).
#[inline]
pub fn prepend_ipv4_header(p: &mut PacketBuf, src: MacAddr) -> Result<(), BufferTooSmall> {
    p.push_front(HEADER_LEN)?;
    let b = p.data_mut();
    b[6..12].copy_from_slice(&src.0);
    b[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    Ok(())
}

#[inline]
pub fn set_dst(p: &mut PacketBuf, dst: MacAddr) {
    p.data_mut()[0..6].copy_from_slice(&dst.0);
}
