//! IPv6 packets built here through `PacketFilter::test`: `inet6` rules,
//! prefixes, states for TCP, UDP and ICMPv6 echo, ICMPv6 errors matched
//! to states, NDP keyed by its target, `block return` with RSTs and
//! ICMPv6 unreachables, extension header and fragment drops, pflog.

use crate::common;
use common::{
    a6, echo6_bytes as echo, icmp6_bytes, ip6_bytes, net, pf_with, tcp6_bytes as tcp6, udp6_bytes, HeapBufs as Bufs,
};

use std::net::Ipv4Addr;
use std::sync::Arc;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::pflog::PflogQueue;
use softnet_pf::{load_ruleset, Pf};
use softnet_wire::icmpv6::{self, Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::Ipv6Packet;
use softnet_wire::tcp::{TcpFlags, TcpPacket};
use softnet_wire::udp::UdpPacket;

const CLIENT: &str = "2001:db8:1::2";
const SERVER: &str = "2001:db8:2::2";

fn udp6(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    udp6_bytes(src, dst, sport, dport, b"hello")
}

fn icmp6(src: &str, dst: &str, hlim: u8, r: Icmpv6Repr) -> Vec<u8> {
    icmp6_bytes(src, dst, hlim, &r)
}

/// An NS or NA (ICMPv6 type `ty`) for `target`, hop limit 255, no options.
fn nd(src: &str, dst: &str, ty: u8, target: &str) -> Vec<u8> {
    let (s, d) = (a6(src), a6(dst));
    let mut body = vec![ty, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&a6(target).octets());
    let mut b = ip6_bytes(s, d, IpProtocol::ICMPV6, 255, body.len());
    b[40..].copy_from_slice(&body);
    Icmpv6Packet::new_unchecked(&mut b[40..]).fill_checksum(s, d);
    b
}

struct Run<'a> {
    pf: &'a Pf,
    now: Instant,
    replies: Vec<PacketBuf>,
}

impl Run<'_> {
    fn go(&mut self, dir: Direction, ifp: &Interface, b: &[u8]) -> bool {
        let v = self.pf.test(0, self.now, dir, ifp, PacketBuf::from_slice(b), &mut Bufs, &mut self.replies);
        matches!(v, Verdict::Pass(_))
    }
}

fn run(pf: &Pf) -> Run<'_> {
    Run { pf, now: Instant::from_secs(1), replies: vec![] }
}

#[test]
fn tcp_state_passes_the_reply_and_only_inet6_rules_match() {
    let n = net();
    let pf = pf_with(
        &n,
        "block all\npass in on em0 inet6 proto tcp from 2001:db8:1::/48 to any port 22\npass in inet proto tcp to port 80\n",
    );
    let mut r = run(&pf);
    let syn = tcp6(CLIENT, SERVER, 40000, 22, TcpFlags::SYN, 1000, 0);
    assert!(r.go(Direction::In, &n.em0, &syn));
    assert_eq!(pf.state_count(), 1);
    // the answer, out on em0, by the state (no rule passes it)
    let synack = tcp6(SERVER, CLIENT, 22, 40000, TcpFlags::from_bits(0x12), 5000, 1001);
    assert!(r.go(Direction::Out, &n.em0, &synack));
    let ack = tcp6(CLIENT, SERVER, 40000, 22, TcpFlags::ACK, 1001, 5001);
    assert!(r.go(Direction::In, &n.em0, &ack));
    // outside the prefix, or to port 80 (an `inet` rule): blocked
    assert!(!r.go(Direction::In, &n.em0, &tcp6("2001:db8:9::2", SERVER, 40001, 22, TcpFlags::SYN, 1, 0)));
    assert!(!r.go(Direction::In, &n.em0, &tcp6(CLIENT, SERVER, 40002, 80, TcpFlags::SYN, 1, 0)));
    // `pfctl -ss`: IPv6 ports in brackets
    let ss = pf.show_states(0, Instant::from_secs(1));
    assert!(ss.contains("all tcp 2001:db8:2::2[22] <- 2001:db8:1::2[40000]"), "{ss}");
    // An IPv4 packet with the same ports is another key.
    let v4 =
        common::tcp_bytes(Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2), 40000, 22, TcpFlags::ACK, 1, 1, 0);
    assert!(!r.go(Direction::In, &n.em0, &v4));
}

#[test]
fn udp_and_echo_states_and_no_state_from_a_reply() {
    let n = net();
    let pf = pf_with(&n, "block all\npass out inet6 proto udp\npass inet6 proto icmp6 icmp6-type echoreq\n");
    let mut r = run(&pf);
    assert!(r.go(Direction::Out, &n.em1, &udp6(CLIENT, SERVER, 5000, 53)));
    assert!(r.go(Direction::In, &n.em1, &udp6(SERVER, CLIENT, 53, 5000)));
    assert!(!r.go(Direction::In, &n.em1, &udp6(SERVER, CLIENT, 53, 5001)));
    // echo: the request makes a state, its reply passes by it
    assert!(r.go(Direction::Out, &n.em1, &echo(CLIENT, SERVER, false, 77)));
    assert!(r.go(Direction::In, &n.em1, &echo(SERVER, CLIENT, true, 77)));
    // another id: no state, and the echoreq rule does not match a reply
    assert!(!r.go(Direction::In, &n.em1, &echo(SERVER, CLIENT, true, 78)));
    // a request from the other side is another key: a state of its own
    assert_eq!(pf.state_count(), 2);
    assert!(r.go(Direction::In, &n.em1, &echo(SERVER, CLIENT, false, 77)));
    assert_eq!(pf.state_count(), 3);
}

/// pf_test_state_icmp's second lookup: a reply to an echo request sent to
/// the all-nodes group finds the request's state through the group.
#[test]
fn an_echo_reply_finds_the_state_of_a_request_to_all_nodes() {
    let n = net();
    let pf = pf_with(&n, "block all\npass out inet6 proto icmp6 icmp6-type echoreq\n");
    let mut r = run(&pf);
    assert!(r.go(Direction::Out, &n.em0, &echo(CLIENT, "ff02::1", false, 42)));
    assert!(r.go(Direction::In, &n.em0, &echo("fe80::9", CLIENT, true, 42)));
    assert!(!r.go(Direction::In, &n.em0, &echo("fe80::9", CLIENT, true, 43)));
}

/// pf_match_rule: a `keep state` rule does not match an ICMPv6 reply, a
/// `no state` one does.
#[test]
fn keep_state_rules_do_not_match_unsolicited_replies() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in inet6 proto icmp6\n");
    let mut r = run(&pf);
    assert!(!r.go(Direction::In, &n.em0, &echo(SERVER, CLIENT, true, 9)));
    let pf = pf_with(&n, "block all\npass in inet6 proto icmp6 no state\n");
    let mut r = run(&pf);
    assert!(r.go(Direction::In, &n.em0, &echo(SERVER, CLIENT, true, 9)));
    assert_eq!(pf.state_count(), 0);
    // The same for IPv4's echo reply; a request still makes its state.
    let (c4, s4) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2));
    let icmp4 = |src, dst, r: softnet_wire::icmpv4::Icmpv4Repr| {
        let i = common::ip_repr(src, dst, IpProtocol::ICMP, r.buffer_len());
        let mut b = vec![0u8; i.buffer_len()];
        i.emit(&mut b);
        r.emit(&mut b[20..]);
        b
    };
    let reply = icmp4(s4, c4, softnet_wire::icmpv4::Icmpv4Repr::EchoReply { ident: 9, seq_no: 1, data: b"x" });
    let req = icmp4(c4, s4, softnet_wire::icmpv4::Icmpv4Repr::EchoRequest { ident: 9, seq_no: 1, data: b"x" });
    let pf = pf_with(&n, "block all\npass in proto icmp\n");
    let mut r = run(&pf);
    assert!(!r.go(Direction::In, &n.em0, &reply));
    assert!(r.go(Direction::In, &n.em0, &req));
    assert_eq!(pf.state_count(), 1);
}

#[test]
fn icmp6_errors_pass_by_the_state_of_the_packet_they_quote() {
    let n = net();
    let pf = pf_with(&n, "block all\npass out inet6 proto udp\n");
    let mut r = run(&pf);
    let out = udp6(CLIENT, SERVER, 5000, 53);
    assert!(r.go(Direction::Out, &n.em1, &out));
    let err = |quote: &[u8], from: &str| {
        icmp6(
            from,
            CLIENT,
            64,
            Icmpv6Repr::DstUnreachable { code: icmpv6::DstUnreachable::PortUnreachable, data: quote },
        )
    };
    assert!(r.go(Direction::In, &n.em1, &err(&out, SERVER)));
    // quoting a flow with no state: blocked by the rules
    assert!(!r.go(Direction::In, &n.em1, &err(&udp6(CLIENT, SERVER, 5001, 53), SERVER)));
    // the quoted packet's source is not the error's destination
    let other = udp6("2001:db8:1::99", SERVER, 5000, 53);
    assert!(!r.go(Direction::In, &n.em1, &err(&other, SERVER)));
    assert_eq!(pf.counter("state-mismatch"), Some(1));
    // a quote too short for its IPv6 header
    assert!(!r.go(Direction::In, &n.em1, &err(&out[..30], SERVER)));
    // an error makes no state, ICMPv6 or ICMP
    let pf = pf_with(&n, "pass all\n");
    let mut r = run(&pf);
    assert!(r.go(Direction::In, &n.em1, &err(&out, SERVER)));
    let (c4, s4) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2));
    let out4 = common::udp_bytes(c4, s4, 5000, 53, b"q");
    let e4 = softnet_wire::icmpv4::Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::PortUnreachable,
        next_hop_mtu: 0,
        data: &out4[..28],
    };
    let i = common::ip_repr(s4, c4, IpProtocol::ICMP, e4.buffer_len());
    let mut b4 = vec![0u8; i.buffer_len()];
    i.emit(&mut b4);
    e4.emit(&mut b4[20..]);
    assert!(r.go(Direction::In, &n.em1, &b4));
    assert_eq!(pf.state_count(), 0);
}

/// pf_icmp_mapping and pf_state_key_addr_setup: an NS is keyed to its
/// target, the NA answering it from its target; an unsolicited NA (to
/// all nodes) passes a rule and is keyed to `::`.
#[test]
fn ndp_is_keyed_by_its_target() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in inet6 proto icmp6 icmp6-type neighbrsol\n");
    let mut r = run(&pf);
    let (a, router, sn) = ("fe80::a", "fe80::1", "ff02::1:ff00:1");
    assert!(r.go(Direction::In, &n.em0, &nd(a, sn, 135, router)));
    // the answer from the target to the asker, out: by the state
    assert!(r.go(Direction::Out, &n.em0, &nd(router, a, 136, router)));
    // an NA for another target has no state
    assert!(!r.go(Direction::Out, &n.em0, &nd(router, a, 136, "fe80::2")));
    // hop limit below 255: normalize
    let mut bad = nd(a, sn, 135, router);
    bad[7] = 64;
    assert!(!r.go(Direction::In, &n.em0, &bad));
    assert_eq!(pf.counter("normalize"), Some(1));
    // An unsolicited NA to ff02::1 makes a state keyed target -> ::.
    let pf = pf_with(&n, "block all\npass out inet6 proto icmp6 icmp6-type neighbradv\n");
    let mut r = run(&pf);
    assert!(r.go(Direction::Out, &n.em0, &nd(router, "ff02::1", 136, router)));
    let ss = pf.show_states(0, Instant::from_secs(1));
    // the id is the target's words xored (fe80:: ^ ::1, low 16 bits)
    assert!(ss.contains("all ipv6-icmp fe80::1[135] -> ::[1]"), "{ss}");
}

#[test]
fn block_return_answers_with_a_rst_or_an_icmp6_unreachable() {
    let n = net();
    let pf = pf_with(&n, "block return in inet6\n");
    let mut r = run(&pf);
    let syn = tcp6(CLIENT, SERVER, 40000, 22, TcpFlags::SYN, 1000, 0);
    assert!(!r.go(Direction::In, &n.em0, &syn));
    let rst = r.replies.pop().expect("a RST");
    let ip = Ipv6Packet::new_checked(rst.data()).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.next_header()), (a6(SERVER), a6(CLIENT), IpProtocol::TCP));
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.verify_checksum_v6(ip.src(), ip.dst()));
    assert_eq!((t.src_port(), t.dst_port(), t.seq_number(), t.ack_number()), (22, 40000, 0, 1001));
    assert_eq!(t.flags().bits(), 0x14);
    // UDP: port unreachable quoting the datagram
    let u = udp6(CLIENT, SERVER, 5000, 53);
    assert!(!r.go(Direction::In, &n.em0, &u));
    let e = r.replies.pop().expect("an ICMPv6 error");
    let ip = Ipv6Packet::new_checked(e.data()).unwrap();
    assert_eq!((ip.src(), ip.dst()), (a6(SERVER), a6(CLIENT)));
    let ic = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(ic.verify_checksum(ip.src(), ip.dst()));
    assert_eq!((ic.msg_type(), ic.code()), (1, 4));
    assert_eq!(ic.data(), &u[..]);
    // a corrupt UDP checksum: no answer, counted
    let mut bad = udp6(CLIENT, SERVER, 5000, 53);
    let n_ = bad.len();
    bad[n_ - 1] ^= 0xff;
    assert!(!r.go(Direction::In, &n.em0, &bad));
    assert!(r.replies.is_empty());
    assert_eq!(pf.counter("proto-cksum"), Some(1));
    // no error about an error, nor to a multicast destination
    let err = icmp6(
        CLIENT,
        SERVER,
        64,
        Icmpv6Repr::DstUnreachable { code: icmpv6::DstUnreachable::PortUnreachable, data: &u },
    );
    assert!(!r.go(Direction::In, &n.em0, &err));
    assert!(!r.go(Direction::In, &n.em0, &udp6(CLIENT, "ff02::1", 5000, 53)));
    assert!(r.replies.is_empty());
    // return-icmp6 with a code
    let pf = pf_with(&n, "block return-icmp6(admin-unr) in inet6\n");
    let mut r = run(&pf);
    assert!(!r.go(Direction::In, &n.em0, &syn));
    let e = r.replies.pop().expect("an ICMPv6 error");
    let ic = Icmpv6Packet::new_checked(&e.data()[40..]).unwrap();
    assert_eq!((ic.msg_type(), ic.code()), (1, 1));
    // ... and the UDP reply's own checksum is right
    let _ = UdpPacket::new_checked(&u[40..]).unwrap();
}

/// `with`'s fragment of a datagram: `whole` cut at payload octets
/// `off..end` behind a fragment header with `id`.
fn frag6(whole: &[u8], id: u32, off: usize, end: usize, more: bool) -> Vec<u8> {
    let mut b = whole[..40].to_vec();
    b[6] = 44;
    b.extend_from_slice(&[whole[6], 0]);
    b.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&whole[40 + off..40 + end]);
    let plen = (b.len() - 40) as u16;
    b[4..6].copy_from_slice(&plen.to_be_bytes());
    b
}

/// pf_reassemble6: fragments are held, the whole datagram is filtered
/// (its fragment header gone, the largest fragment payload and the
/// identification kept for pf_refragment6), a state made for it; an
/// overlap drops the datagram (RFC 5722).
#[test]
fn ipv6_fragments_are_reassembled_before_the_rules_and_overlaps_drop_the_datagram() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in on em0 inet6 proto udp to port 53\n");
    let mut r = run(&pf);
    let mut whole = udp6(CLIENT, SERVER, 5000, 53);
    // A longer datagram: 8 octets of UDP header and 40 of data.
    whole.truncate(48);
    whole.extend_from_slice(&[0x5a; 40]);
    whole[4..6].copy_from_slice(&48u16.to_be_bytes());
    whole[44..46].copy_from_slice(&48u16.to_be_bytes());
    let first = frag6(&whole, 7, 0, 24, true);
    let second = frag6(&whole, 7, 24, 48, false);
    let v = pf.test(0, r.now, Direction::In, &n.em0, PacketBuf::from_slice(&second), &mut Bufs, &mut r.replies);
    assert!(matches!(v, Verdict::Consumed), "held");
    let v = pf.test(0, r.now, Direction::In, &n.em0, PacketBuf::from_slice(&first), &mut Bufs, &mut r.replies);
    let Verdict::Pass(p) = v else { panic!("the datagram passes") };
    assert_eq!(p.data(), &whole[..], "reassembled, without the fragment header");
    assert_eq!((p.meta.pf_frag_max, p.meta.flow_hash), (24, 7));
    assert_eq!(pf.state_count(), 1);
    // Overlapping fragments: the datagram is dropped, counted.
    let before = pf.counter("fragment").unwrap_or(0);
    assert!(matches!(
        pf.test(
            0,
            r.now,
            Direction::In,
            &n.em0,
            PacketBuf::from_slice(&frag6(&whole, 8, 0, 24, true)),
            &mut Bufs,
            &mut r.replies
        ),
        Verdict::Consumed
    ));
    assert!(!r.go(Direction::In, &n.em0, &frag6(&whole, 8, 16, 48, false)));
    assert_eq!(pf.counter("fragment"), Some(before + 1));
    // The rest of it starts a datagram of its own that never completes.
    assert!(!r.go(Direction::In, &n.em0, &frag6(&whole, 8, 24, 48, false)));
    assert_eq!(pf.state_count(), 1);
}

#[test]
fn extension_headers_and_fragments_are_judged_as_pf_walk_header6() {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let mut r = run(&pf);
    let plain = udp6(CLIENT, SERVER, 5000, 53);
    let with = |next: u8, ext: &[u8]| {
        let mut b = plain[..40].to_vec();
        b[6] = next;
        b[4..6].copy_from_slice(&((plain.len() - 40 + ext.len()) as u16).to_be_bytes());
        b.extend_from_slice(ext);
        b.extend_from_slice(&plain[40..]);
        b
    };
    // routing type 0: ip-option
    assert!(!r.go(Direction::In, &n.em0, &with(43, &[17, 0, 0, 1, 0, 0, 0, 0])));
    assert_eq!(pf.counter("ip-option"), Some(1));
    // destination options: passes with `allow-opts` only
    let dst_opts = with(60, &[17, 0, 1, 4, 0, 0, 0, 0]);
    assert!(!r.go(Direction::In, &n.em0, &dst_opts));
    assert_eq!(pf.counter("ip-option"), Some(2));
    let pf2 = pf_with(&n, "pass all allow-opts\n");
    assert!(run(&pf2).go(Direction::In, &n.em0, &dst_opts));
    // a fragment that cannot be one (more to come, not a multiple of 8
    // octets): refused as a fragment
    let frag = with(44, &[17, 0, 0, 1, 0, 0, 0, 9]);
    assert!(!r.go(Direction::In, &n.em0, &frag));
    assert_eq!(pf.counter("fragment"), Some(1));
    // ... unless `set reassemble no` sends it to the rules
    let pf3 = pf_with(&n, "set reassemble no\npass all\n");
    assert!(run(&pf3).go(Direction::In, &n.em0, &frag));
    assert_eq!(pf3.state_count(), 0);
    // an atomic fragment is the datagram itself
    let atomic = with(44, &[17, 0, 0, 0, 0, 0, 0, 9]);
    assert!(r.go(Direction::In, &n.em0, &atomic));
    // a payload length past the packet: short
    let mut short = plain.clone();
    short[5] += 8;
    assert!(!r.go(Direction::In, &n.em0, &short));
    assert_eq!(pf.counter("short"), Some(1));
}

#[test]
fn pflog_records_ipv6_packets_with_their_family() {
    let n = net();
    let pf = pf_with(&n, "block log inet6\n");
    let q = Arc::new(PflogQueue::new(8));
    pf.set_pflog(Some(q.clone()));
    let mut r = run(&pf);
    assert!(!r.go(Direction::In, &n.em0, &udp6(CLIENT, SERVER, 5000, 53)));
    let mut out = vec![];
    q.drain_to(&mut out, 0).unwrap();
    let rec = &out[16..];
    assert_eq!((rec[1], rec[62]), (24, 24));
    assert_eq!(&rec[64..80], &a6(CLIENT).octets());
    assert_eq!(&rec[80..96], &a6(SERVER).octets());
    assert_eq!(rec[100] >> 4, 6);
}

/// Tables hold IPv6 prefixes beside IPv4 ones (longest prefix, negated
/// entries) and count IPv6 packets on their entries.
#[test]
fn tables_match_ipv6_prefixes() {
    let n = net();
    let pf = pf_with(
        &n,
        "table <nets> { 10.0.1.0/24 2001:db8:1::/48 !2001:db8:1:bad::/64 }\nblock all\npass in inet6 proto udp from <nets>\n",
    );
    let mut r = run(&pf);
    assert!(r.go(Direction::In, &n.em0, &udp6("2001:db8:1:7::1", SERVER, 5000, 53)));
    assert!(!r.go(Direction::In, &n.em0, &udp6("2001:db8:1:bad::1", SERVER, 5000, 53)));
    assert!(!r.go(Direction::In, &n.em0, &udp6("2001:db8:9::1", SERVER, 5000, 53)));
    let show = pf.table_show("nets", true).unwrap();
    assert!(show.contains("   2001:db8:1::/48\n"), "{show}");
    assert!(show.contains("  !2001:db8:1:bad::/64\n"), "{show}");
    assert!(show.contains("In/Pass:     [ Packets: 1 "), "{show}");
    let (msg, all) = pf.table_test("nets", &["2001:db8:1::9".parse().unwrap(), "10.0.1.5".parse().unwrap()]).unwrap();
    assert_eq!((msg.as_str(), all), ("2/2 addresses match.", true));
}

#[test]
fn ipv6_routing_options_load_and_a_next_hop_of_the_other_family_is_refused() {
    let n = net();
    for text in [
        "pass in inet6 proto tcp route-to 2001:db8::1\n",
        "pass out on em0 inet6 reply-to (em0 fe80::1)\n",
        "pass in inet6 dup-to { 2001:db8::1, 2001:db8::2 } round-robin sticky-address\n",
    ] {
        assert!(load_ruleset(text, "pf.conf", &n.resolver).is_ok(), "{text}");
    }
    let errs = load_ruleset("pass in inet6 proto tcp route-to 192.0.2.1\n", "pf.conf", &n.resolver).unwrap_err();
    assert!(errs.iter().any(|e| e.message == "af mismatch in routing spec"), "{errs:?}");
}

/// `antispoof for em0 inet6` with the interface's IPv6 prefix: its
/// network arriving on another interface, or its own address arriving
/// anywhere, is blocked.
#[test]
fn antispoof_blocks_an_interfaces_ipv6_network_elsewhere() {
    let n = net();
    let resolver = softnet_pf::StaticResolver::new()
        .with_interface("em0", &["10.0.1.1/24", "2001:db8:1::1/64"])
        .with_interface("em1", &["10.0.2.1/24"]);
    let rs = softnet_pf::parse_ruleset("pass all no state\nantispoof for em0 inet6\n", "pf.conf", &resolver).unwrap();
    let text = softnet_pf::print_ruleset(&rs, &Default::default());
    assert!(text.contains("block drop in on ! em0 inet6 from 2001:db8:1::/64 to any"), "{text}");
    let pf = Pf::new();
    pf.load(&rs, &resolver).unwrap();
    let mut r = run(&pf);
    let from_net = udp6("2001:db8:1::5", SERVER, 5000, 53);
    assert!(r.go(Direction::In, &n.em0, &from_net));
    assert!(!r.go(Direction::In, &n.em1, &from_net));
    // the interface's own address as a source, even on em0
    assert!(!r.go(Direction::In, &n.em0, &udp6("2001:db8:1::1", SERVER, 5000, 53)));
    // IPv4 is not antispoofed by an inet6 antispoof
    let v4 = common::udp_bytes(Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 2, 2), 1, 2, b"x");
    assert!(r.go(Direction::In, &n.em1, &v4));
}

/// `set prio` (unlike scrub) applies to IPv6 packets, by rule and by the
/// state it made.
#[test]
fn set_prio_applies_to_ipv6_packets_and_their_states() {
    let n = net();
    let pf = pf_with(&n, "pass out proto udp set prio 6\n");
    let go = |dir, ifp: &Interface, b: &[u8]| {
        let mut replies = vec![];
        match pf.test(0, Instant::from_secs(1), dir, ifp, PacketBuf::from_slice(b), &mut Bufs, &mut replies) {
            Verdict::Pass(p) => Some(p.meta.prio()),
            _ => None,
        }
    };
    assert_eq!(go(Direction::Out, &n.em1, &udp6(CLIENT, SERVER, 5000, 53)), Some(6));
    assert_eq!(go(Direction::In, &n.em1, &udp6(SERVER, CLIENT, 53, 5000)), Some(6));
}

/// `pfctl -k` with IPv6 hosts: the states from that source (to that
/// destination), of that family only.
#[test]
fn kill_states_by_ipv6_host() {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let mut r = run(&pf);
    assert!(r.go(Direction::In, &n.em0, &udp6(CLIENT, SERVER, 5000, 53)));
    assert!(r.go(Direction::In, &n.em0, &udp6(CLIENT, "2001:db8:3::3", 5000, 53)));
    assert!(r.go(Direction::In, &n.em0, &udp6("2001:db8:1::7", SERVER, 5000, 53)));
    assert_eq!(pf.state_count(), 3);
    assert_eq!(pf.kill_states_ip(a6(CLIENT).into(), Some(a6(SERVER).into())), 1);
    assert_eq!(pf.kill_states_ip(a6(CLIENT).into(), Some(Ipv4Addr::new(10, 0, 2, 2).into())), 0);
    assert_eq!(pf.kill_states_ip(a6(CLIENT).into(), None), 1);
    assert_eq!(pf.state_count(), 1);
}
