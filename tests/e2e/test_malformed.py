"""Malformed frames at the daemon: it keeps forwarding, counts the drops,
and does not log per packet.

Frames are built with scapy (and by hand where scapy would fix them) in
namespace A and sent on A's veth to the router's MAC (packet driver, then tap):
headers cut short, bad IP version/header length/total length/checksum/
options, multicast source, broken UDP/TCP/ICMP to the router itself, bad
ARP, unknown ethertypes, VLAN-tagged frames, IPv6 frames that may not be
forwarded or carry an IPv4 header, runts (if the kernel
lets them out) and giants (A's veth and the router's are set to MTU 9000,
the router's interface to 1500). Each kind is sent COUNT times; then
`netstat -s` must show each kind's counter grown (and 1000 TTL-1 packets at
once must hit the ICMP error rate limit), `ping` A <-> B must
still work, and the daemon's log must not have grown by a line per frame.
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import (MAC_A, MAC_R0, Topo, check, in_netns, log, main, netstat_s_counters)  # noqa: E402

COUNT = 10
TTL_FLOOD = 1000
A, B, R = "10.0.1.2", "10.0.2.2", "10.0.1.1"


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ether(payload, etype=0x0800, dst=MAC_R0, src=MAC_A):
    return mac(dst) + mac(src) + struct.pack("!H", etype) + payload


def ipv4(payload, src=A, dst=B, proto=1, ttl=64, options=b"", ihl=None, tot=None, ver=4, check_=None, df=False):
    """An IPv4 header by hand: every field can be wrong on purpose."""
    hl = 20 + len(options)
    ihl = hl // 4 if ihl is None else ihl
    tot = hl + len(payload) if tot is None else tot
    h = struct.pack("!BBHHHBBH4s4s", (ver << 4) | ihl, 0, tot, 0x1234, 0x4000 if df else 0, ttl, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = csum(h) if check_ is None else check_
    h = h[:10] + struct.pack("!H", c) + h[12:]
    return h + payload


def pseudo(src, dst, proto, seg):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, len(seg))


def frames():
    """(counter that must grow, description, frame bytes)."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Dot1Q, Ether  # noqa: F401
    from scapy.packet import Raw

    icmp = bytes(ICMP(type=8, id=7, seq=1) / Raw(b"x" * 32))
    bad_icmp = icmp[:2] + b"\xde\xad" + icmp[4:]
    udp_ok = bytes(IP(src=A, dst=R) / UDP(sport=4000, dport=9) / Raw(b"y" * 16))[20:]
    bad_udp = udp_ok[:6] + struct.pack("!H", (struct.unpack("!H", udp_ok[6:8])[0] ^ 0x5555) or 1) + udp_ok[8:]
    long_udp = udp_ok[:4] + struct.pack("!H", 200) + udp_ok[6:]
    tcp_ok = bytes(IP(src=A, dst=R) / TCP(sport=4000, dport=22, flags="S"))[20:]
    bad_tcp = tcp_ok[:16] + struct.pack("!H", struct.unpack("!H", tcp_ok[16:18])[0] ^ 0x5555) + tcp_ok[18:]
    arp_ok = bytes(ARP(op=1, hwsrc=MAC_A, psrc=A, pdst=R))
    f = [
        ("ip: with size smaller than minimum", "Ethernet header only (14 bytes, type IPv4)", ether(b"")),
        ("ip: with size smaller than minimum", "IP header cut at 10 bytes", ether(ipv4(icmp)[:10])),
        ("ip: with incorrect version number", "IP version 5", ether(ipv4(icmp, ver=5))),
        ("ip: with header length < data size", "IP header length 12 (ihl 3)", ether(ipv4(icmp, ihl=3))),
        ("ip: with header length < data size", "IP header length 60 in a 28-byte packet",
         ether(ipv4(b"\x08\0\0\0\0\0\0\0", ihl=15))),
        ("ip: bad header checksums", "bad IP header checksum", ether(ipv4(icmp, check_=0x1234))),
        ("ip: with data length < header length", "IP total length 10", ether(ipv4(icmp, tot=10))),
        ("ip: with data size < data length", "IP total length 1000 in 60 bytes", ether(ipv4(icmp, tot=1000))),
        ("ip: with bad options", "IP option with length 0", ether(ipv4(icmp, options=b"\x07\x00\x00\x00"))),
        ("ip: with bad options", "IP option longer than the header",
         ether(ipv4(icmp, options=b"\x44\x28\x05\x00"))),
        ("ip: with bad options", "IP option list cut in the middle of an option",
         ether(ipv4(icmp, options=b"\x01\x01\x01\x83"))),
        ("ip: with bad options", "loose source route (refused)",
         ether(ipv4(icmp, options=b"\x83\x07\x04" + socket.inet_aton(B) + b"\x00"))),
        ("ip: datagrams with bad address in header", "multicast source address",
         ether(ipv4(icmp, src="224.0.0.5"))),
        ("icmp: bad checksums", "ICMP echo to the router, bad checksum", ether(ipv4(bad_icmp, dst=R))),
        ("icmp: messages < minimum length", "ICMP to the router, 3 bytes", ether(ipv4(b"\x08\x00\xf7", dst=R))),
        ("udp: with bad checksum", "UDP to the router, bad checksum", ether(ipv4(bad_udp, dst=R, proto=17))),
        ("udp: with bad data length field", "UDP length 200 in 24 bytes", ether(ipv4(long_udp, dst=R, proto=17))),
        ("udp: with incomplete header", "UDP header cut at 4 bytes", ether(ipv4(udp_ok[:4], dst=R, proto=17))),
        ("tcp: discarded for bad checksum", "TCP SYN to the router, bad checksum",
         ether(ipv4(bad_tcp, dst=R, proto=6))),
        ("tcp: discarded because packet too short", "TCP header cut at 10 bytes",
         ether(ipv4(tcp_ok[:10], dst=R, proto=6))),
        ("arp: malformed ARP packets dropped", "ARP cut at 10 bytes", ether(arp_ok[:10], 0x0806)),
        ("arp: malformed ARP packets dropped", "ARP with hardware length 8",
         ether(arp_ok[:4] + b"\x08" + arp_ok[5:] + b"\0\0", 0x0806)),
        ("arp: malformed ARP packets dropped", "ARP for protocol 0x86dd",
         ether(arp_ok[:2] + b"\x86\xdd" + arp_ok[4:], 0x0806)),
        ("ether: frames with unknown ethertype", "ethertype 0x88b5", ether(b"\0" * 46, 0x88B5)),
        ("ip6: packets that violated scope rules", "an IPv6 frame from a link-local source to another link",
         bytes(Ether(dst=MAC_R0, src=MAC_A) / IPv6(src="fe80::1", dst="fe80::2") / Raw(b"z" * 8))),
        ("ip6: with incorrect version number", "an IPv6 EtherType with an IPv4 header",
         ether(ipv4(b"\0" * 40, dst=R), 0x86DD)),
        ("ether: 802.1Q tagged frames dropped (no vlan interface)", "an 802.1Q tagged frame",
         bytes(Ether(dst=MAC_R0, src=MAC_A) / Dot1Q(vlan=5) / IP(src=A, dst=B) / ICMP())),
    ]
    return f


def run_test():
    for driver in ("packet", "tap"):
        run_driver(driver)


def run_driver(driver):
    with Topo(f"mal{driver[0]}") as t:
        t.step(f"topology: A -- softnet ({driver}) -- B; A's veth and the router's at MTU 9000 (giants)")
        net = t.router_topology(driver)
        for ns, ifc in ((net.a, "a0"), (net.r, "ra")):
            t.ns_run(ns, f"ip link set {ifc} mtu 9000")
        d = t.daemon(net.config(mtu_a=1500), net=net)
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
        c0 = netstat_s_counters(d.out("netstat", "-s"))
        lines0 = len(d.log_lines())

        with in_netns(net.a):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            s.bind(("a0", 0))
            kinds = frames()
            sent = 0
            t.step(f"send {len(kinds)} kinds of malformed frames, {COUNT} of each")
            for rnd in range(COUNT):
                for _, what, fr in kinds:
                    s.send(fr)
                    sent += 1
                time.sleep(0.02)

            t.step("runts (< 14 bytes) and giants (1600, 4000, 8000 bytes)")
            runts = 0
            for n in (1, 6, 13):
                try:
                    for _ in range(COUNT):
                        s.send(ether(b"")[:n])
                        runts += 1
                        sent += 1
                except OSError as e:
                    log(f"  the kernel refuses to send a {n}-byte frame on a veth ({e.strerror}): not testable here")
                    break
            big_icmp = b"\x08\0\0\0\0\x07\0\x01" + b"g" * 7900
            for size in (1600, 4000, 8000):
                fr = ether(ipv4(big_icmp[: size - 34]))
                for _ in range(COUNT):
                    s.send(fr)
                    sent += 1
            t.step(f"{sent} bad frames sent ({runts} runts)")

            t.step(f"{TTL_FLOOD} packets with TTL 1 at once: ICMP time exceeded rate-limited, all counted")
            c_ttl = netstat_s_counters(d.out("netstat", "-s"))
            icmp = b"\x08\0\0\0\0\x09\0\x01" + b"t" * 32
            fr = ether(ipv4(icmp, ttl=1))
            for _ in range(TTL_FLOOD):
                s.send(fr)
                sent += 1
        finally:
            s.close()

        t.step("the daemon is up and forwarding: ping A <-> B")
        time.sleep(1)
        check(d.alive(), "daemon died")
        for i in range(3):
            if t.ns_run(net.a, "ping -n -c 3 -i 0.3 -W 3 10.0.2.2", check_rc=False).returncode == 0:
                break
        else:
            check(False, "A -> B ping fails after the malformed frames")
        t.ns_run(net.b, "ping -n -c 2 -i 0.3 -W 3 10.0.1.2")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.1.1")

        t.step("netstat -s: each kind's drop counter grew")
        c1 = netstat_s_counters(d.out("netstat", "-s"))
        ttl = c1["ip: packets with ttl exceeded"] - c_ttl["ip: packets with ttl exceeded"]
        limited = (c1["icmp: errors not generated because of rate limitation"]
                   - c_ttl["icmp: errors not generated because of rate limitation"])
        log(f"  ttl exceeded: +{ttl}, ICMP errors not sent (rate limit): +{limited}")
        check(ttl >= TTL_FLOOD // 2, f"TTL 1 packets counted: {ttl} of {TTL_FLOOD}")
        check(limited > 0, f"no ICMP error rate limitation for {TTL_FLOOD} TTL-expired packets")
        want = {}
        for counter, what, _ in kinds:
            want.setdefault(counter, []).append(what)
        bad = []
        for counter, whats in want.items():
            delta = c1[counter] - c0[counter]
            log(f"  {counter}: +{delta} (sent {COUNT * len(whats)}: {'; '.join(whats)})")
            # Every frame was sent once per round; allow for a lost one on a busy machine.
            if delta < (COUNT * len(whats)) // 2:
                bad.append(f"{counter}: +{delta}, sent {COUNT * len(whats)}")
        check(not bad, "drop counters did not grow as expected:\n  " + "\n  ".join(bad))
        ni = d.out("netstat", "-i")
        log("  netstat -i:\n" + ni)

        t.step("the log did not grow per bad frame")
        new = d.log_lines()[lines0:]
        for line in new[:20]:
            log("  log: " + line)
        check(len(new) < sent // 10, f"{len(new)} new log lines for {sent} bad frames")
        log(f"  {len(new)} new log lines for {sent} bad frames")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
