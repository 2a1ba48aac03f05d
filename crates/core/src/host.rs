//! A host stub on a virtual link: enough of an IPv4 host to test and demo
//! the router (ARP both ways, ping, UDP, ICMP errors received). It is a
//! test peer, not part of the data path: it allocates freely.

use crate::iface::IfAddr;
use crate::packet::PacketBuf;
use crate::vlink::VirtualPort;
use softnet_wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use softnet_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr, HEADER_LEN};
use softnet_wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::{TcpPacket, MIN_HEADER_LEN as TCP_MIN_HEADER_LEN};
use softnet_wire::udp::{UdpPacket, UdpRepr};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Something the host saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    ArpLearned {
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    EchoReply {
        from: Ipv4Addr,
        ident: u16,
        seq: u16,
        ttl: u8,
        len: usize,
    },
    EchoRequestAnswered {
        from: Ipv4Addr,
    },
    TimeExceeded {
        from: Ipv4Addr,
        orig_dst: Ipv4Addr,
    },
    Unreachable {
        from: Ipv4Addr,
        code: u8,
        mtu: u16,
        orig_dst: Ipv4Addr,
    },
    Udp {
        from: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        len: usize,
    },
    Tcp {
        from: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Other {
        ethertype: u16,
    },
    /// An IPv4 packet for another address came to this host's MAC (a
    /// router sent it here as a next hop); a host does not forward it.
    Transit {
        from: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        ttl: u8,
    },
}

pub struct Host {
    pub name: String,
    pub mac: MacAddr,
    pub addr: IfAddr,
    pub gateway: Option<Ipv4Addr>,
    port: VirtualPort,
    arp: HashMap<Ipv4Addr, MacAddr>,
    waiting: Vec<(Ipv4Addr, Vec<u8>)>,
    pub events: Vec<HostEvent>,
    /// UDP datagrams received (counted, not stored as events when
    /// `quiet_udp` is set, for floods).
    pub udp_received: u64,
    pub quiet_udp: bool,
    ident: u16,
    rx: PacketBuf,
}

impl Host {
    pub fn new(name: &str, mac: MacAddr, addr: IfAddr, gateway: Option<Ipv4Addr>, port: VirtualPort) -> Self {
        Host {
            name: name.into(),
            mac,
            addr,
            gateway,
            port,
            arp: HashMap::new(),
            waiting: Vec::new(),
            events: Vec::new(),
            udp_received: 0,
            quiet_udp: false,
            ident: 1,
            rx: PacketBuf::with_capacity(16384),
        }
    }

    /// The link end, for sending crafted frames.
    pub fn port(&self) -> &VirtualPort {
        &self.port
    }

    pub fn arp_entry(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.arp.get(&ip).copied()
    }

    /// Processes every frame waiting on the link; returns how many.
    pub fn poll(&mut self) -> usize {
        let mut n = 0;
        loop {
            self.rx.reset();
            if !self.port.recv(&mut self.rx) {
                break;
            }
            n += 1;
            let frame = self.rx.data().to_vec();
            self.input(&frame);
        }
        n
    }

    fn input(&mut self, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else { return };
        if eth.dst() != self.mac && !eth.dst().is_broadcast() {
            return;
        }
        match eth.ethertype() {
            EtherType::ARP => self.arp_input(eth.payload()),
            EtherType::IPV4 => self.ip_input(eth.payload()),
            t => self.events.push(HostEvent::Other { ethertype: t.0 }),
        }
    }

    fn arp_input(&mut self, b: &[u8]) {
        let Ok(repr) = ArpPacket::new_checked(b).and_then(|p| ArpRepr::parse(&p)) else { return };
        if repr.target_ip != self.addr.addr {
            return;
        }
        if self.arp.insert(repr.sender_ip, repr.sender_hw) != Some(repr.sender_hw) {
            self.events.push(HostEvent::ArpLearned { ip: repr.sender_ip, mac: repr.sender_hw });
        }
        if repr.operation == ArpOperation::Request {
            let reply = ArpRepr {
                operation: ArpOperation::Reply,
                sender_hw: self.mac,
                sender_ip: self.addr.addr,
                target_hw: repr.sender_hw,
                target_ip: repr.sender_ip,
            };
            self.send_arp(repr.sender_hw, &reply);
        }
        // Flush what waited for this address.
        let ready: Vec<_> =
            self.waiting.iter().filter(|(nh, _)| *nh == repr.sender_ip).map(|(_, p)| p.clone()).collect();
        self.waiting.retain(|(nh, _)| *nh != repr.sender_ip);
        for p in ready {
            self.send_frame_to(repr.sender_hw, &p);
        }
    }

    fn ip_input(&mut self, b: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(b) else { return };
        if !ip.verify_checksum() {
            return;
        }
        if ip.dst() != self.addr.addr {
            if !ip.dst().is_broadcast() && !ip.dst().is_multicast() && self.addr.broadcast() != Some(ip.dst()) {
                let (from, dst, proto, ttl) = (ip.src(), ip.dst(), ip.protocol().0, ip.ttl());
                self.events.push(HostEvent::Transit { from, dst, proto, ttl });
            }
            return;
        }
        let hlen = ip.header_len() as usize;
        let total = ip.total_len() as usize;
        let payload = &b[hlen..total];
        let from = ip.src();
        match ip.protocol() {
            IpProtocol::ICMP => {
                let Ok(pkt) = Icmpv4Packet::new_checked(payload) else { return };
                let Ok(repr) = Icmpv4Repr::parse(&pkt) else { return };
                match repr {
                    Icmpv4Repr::EchoReply { ident, seq_no, data } => self.events.push(HostEvent::EchoReply {
                        from,
                        ident,
                        seq: seq_no,
                        ttl: ip.ttl(),
                        len: data.len(),
                    }),
                    Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                        let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
                        let mut icmp = vec![0u8; reply.buffer_len()];
                        reply.emit(&mut icmp);
                        self.send_ip(from, IpProtocol::ICMP, 64, &icmp);
                        self.events.push(HostEvent::EchoRequestAnswered { from });
                    }
                    Icmpv4Repr::TimeExceeded { data, .. } => {
                        let orig_dst = quoted_dst(data);
                        self.events.push(HostEvent::TimeExceeded { from, orig_dst });
                    }
                    Icmpv4Repr::DstUnreachable { code, next_hop_mtu, data } => {
                        let orig_dst = quoted_dst(data);
                        self.events.push(HostEvent::Unreachable {
                            from,
                            code: code.into(),
                            mtu: next_hop_mtu,
                            orig_dst,
                        });
                    }
                    _ => {}
                }
            }
            IpProtocol::UDP => {
                let Ok(u) = UdpPacket::new_checked(payload) else { return };
                self.udp_received += 1;
                if !self.quiet_udp {
                    self.events.push(HostEvent::Udp {
                        from,
                        src_port: u.src_port(),
                        dst_port: u.dst_port(),
                        len: u.payload().len(),
                    });
                }
            }
            IpProtocol::TCP if payload.len() >= TCP_MIN_HEADER_LEN => {
                let tcp = TcpPacket::new_unchecked(payload);
                self.events.push(HostEvent::Tcp {
                    from,
                    src_port: tcp.src_port(),
                    dst_port: tcp.dst_port(),
                    flags: tcp.flags().bits(),
                });
            }
            _ => {}
        }
    }

    fn send_arp(&self, dst: MacAddr, repr: &ArpRepr) {
        let mut f = vec![0u8; 60];
        EthernetRepr { src: self.mac, dst, ethertype: EtherType::ARP, vlan: None }.emit(&mut f);
        repr.emit(&mut f[HEADER_LEN..HEADER_LEN + ArpRepr::LEN]);
        self.port.send(0, &f);
    }

    fn send_frame_to(&self, dst: MacAddr, ip_packet: &[u8]) {
        let mut f = vec![0u8; HEADER_LEN + ip_packet.len()];
        EthernetRepr { src: self.mac, dst, ethertype: EtherType::IPV4, vlan: None }.emit(&mut f);
        f[HEADER_LEN..].copy_from_slice(ip_packet);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        self.port.send(0, &f);
    }

    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.addr.contains(dst) {
            Some(dst)
        } else {
            self.gateway
        }
    }

    /// Sends an IP packet (header built here), resolving the next hop.
    pub fn send_ip(&mut self, dst: Ipv4Addr, proto: IpProtocol, ttl: u8, payload: &[u8]) {
        let pkt = self.build_ip(dst, proto, ttl, payload, false);
        self.send_ip_packet(dst, pkt);
    }

    /// Sends a complete IP packet, resolving the next hop by ARP.
    pub fn send_ip_packet(&mut self, dst: Ipv4Addr, pkt: Vec<u8>) {
        if dst.is_broadcast() || self.addr.broadcast() == Some(dst) {
            return self.send_frame_to(MacAddr::BROADCAST, &pkt);
        }
        let Some(nh) = self.next_hop(dst) else { return };
        match self.arp.get(&nh) {
            Some(&mac) => self.send_frame_to(mac, &pkt),
            None => {
                let first = !self.waiting.iter().any(|(h, _)| *h == nh);
                self.waiting.push((nh, pkt));
                if first {
                    let req = ArpRepr {
                        operation: ArpOperation::Request,
                        sender_hw: self.mac,
                        sender_ip: self.addr.addr,
                        target_hw: MacAddr::ZERO,
                        target_ip: nh,
                    };
                    self.send_arp(MacAddr::BROADCAST, &req);
                }
            }
        }
    }

    pub fn build_ip(&mut self, dst: Ipv4Addr, proto: IpProtocol, ttl: u8, payload: &[u8], df: bool) -> Vec<u8> {
        self.ident = self.ident.wrapping_add(1);
        let repr = Ipv4Repr {
            src: self.addr.addr,
            dst,
            protocol: proto,
            ttl,
            tos: 0,
            ident: self.ident,
            dont_frag: df,
            payload_len: payload.len(),
        };
        let mut b = vec![0u8; 20 + payload.len()];
        repr.emit(&mut b[..20]);
        b[20..].copy_from_slice(payload);
        b
    }

    /// `ping -t ttl -s size`: one echo request.
    pub fn ping(&mut self, dst: Ipv4Addr, ident: u16, seq: u16, ttl: u8, size: usize) {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let req = Icmpv4Repr::EchoRequest { ident, seq_no: seq, data: &data };
        let mut icmp = vec![0u8; req.buffer_len()];
        req.emit(&mut icmp);
        self.send_ip(dst, IpProtocol::ICMP, ttl, &icmp);
    }

    /// One UDP datagram with `len` bytes of payload.
    pub fn send_udp(&mut self, dst: Ipv4Addr, src_port: u16, dst_port: u16, len: usize, ttl: u8) {
        let udp = udp_datagram(self.addr.addr, dst, src_port, dst_port, len);
        self.send_ip(dst, IpProtocol::UDP, ttl, &udp);
    }

    /// A complete Ethernet frame carrying one UDP datagram from this host to
    /// `dst` through `next_hop_mac` (for generators).
    pub fn udp_frame(
        &mut self,
        next_hop_mac: MacAddr,
        dst: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        len: usize,
    ) -> Vec<u8> {
        let udp = udp_datagram(self.addr.addr, dst, src_port, dst_port, len);
        let ip = self.build_ip(dst, IpProtocol::UDP, 64, &udp, false);
        let mut f = vec![0u8; HEADER_LEN + ip.len()];
        EthernetRepr { src: self.mac, dst: next_hop_mac, ethertype: EtherType::IPV4, vlan: None }.emit(&mut f);
        f[HEADER_LEN..].copy_from_slice(&ip);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    /// Takes the events seen so far.
    pub fn take_events(&mut self) -> Vec<HostEvent> {
        std::mem::take(&mut self.events)
    }
}

/// A UDP header + payload with its checksum.
pub fn udp_datagram(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 8 + len];
    UdpRepr { src_port, dst_port, payload_len: len }.emit(&mut b[..8]);
    for (i, x) in b[8..].iter_mut().enumerate() {
        *x = i as u8;
    }
    let mut u = UdpPacket::new_unchecked(&mut b[..]);
    u.set_len((8 + len) as u16);
    u.fill_checksum(src, dst);
    b
}

/// Destination address of the IP header quoted in an ICMP error.
fn quoted_dst(data: &[u8]) -> Ipv4Addr {
    if data.len() >= softnet_wire::ipv4::MIN_HEADER_LEN {
        Ipv4Packet::new_unchecked(data).dst()
    } else {
        Ipv4Addr::UNSPECIFIED
    }
}
