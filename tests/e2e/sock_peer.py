"""The Linux peer's side of test_sock_robust.py, run in a namespace with
`ip netns exec NS python3 sock_peer.py MODE ...`; prints one JSON object.

Modes (HOST:PORT is examples/echo.rs's TCP and UDP echo):
  concurrent HOST PORT N      N connections open at once, each sends 1 KB
                              of its own and reads it back
  udp HOST PORT N             N datagrams of 1..1400 bytes, each echoed
  bulk HOST PORT MB           MB sent while the echo is read: SHA-256 both
  churn HOST PORT N           N streaming connections; odd ones aborted
                              mid-stream (RST), even ones finish cleanly
  flood IFACE SRC DST PORT N [FIRST]
                              N SYNs from SRC (ports from 1024 + FIRST on) to DST:PORT,
                              built by scapy, sent on a packet socket
  hold HOST PORT MB           a peer that never reads: writes until the
                              echo's window closes, sleeps, then closes
  blind IFACE HOST PORT       crafted segments (scapy) on an established
                              echo connection and to the listener: blind
                              in-window RST and SYN (RFC 5961 challenge
                              ACKs), out-of-window data, a malformed option,
                              a bad checksum, a flood of 1,000 1-byte out-of-order
                              segments, SYN with data; the echo checked
                              after each
"""

import hashlib
import json
import os
import random
import resource
import selectors
import socket
import struct
import sys
import threading
import time


def out(**kw):
    print(json.dumps(kw), flush=True)


def concurrent(host, port, n):
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, n + 256))
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    conns = {}
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        want = hashlib.sha256(str(i).encode()).digest() * 32  # 1 KB
        conns[s] = {"want": want, "sent": 0, "got": b"", "i": i}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    ok = failed = 0
    deadline = t0 + 60
    while conns and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1):
            s = key.fileobj
            c = conns.get(s)
            if c is None:
                continue
            try:
                if ev & selectors.EVENT_WRITE and c["sent"] < len(c["want"]):
                    c["sent"] += s.send(c["want"][c["sent"]:])
                    if c["sent"] == len(c["want"]):
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    b = s.recv(4096)
                    if not b:
                        raise OSError("closed early")
                    c["got"] += b
                    if len(c["got"]) >= len(c["want"]):
                        if c["got"] == c["want"]:
                            ok += 1
                        else:
                            failed += 1
                        sel.unregister(s)
                        s.close()
                        del conns[s]
            except OSError:
                failed += 1
                sel.unregister(s)
                s.close()
                del conns[s]
    out(ok=ok, failed=failed, unfinished=len(conns), secs=round(time.monotonic() - t0, 2))


def udp(host, port, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    rnd = random.Random(5)
    echoed = bad = 0
    for i in range(n):
        d = bytes(rnd.getrandbits(8) for _ in range(1 + (i * 37) % 1400))
        s.sendto(d, (host, port))
        try:
            b, _ = s.recvfrom(2048)
        except socket.timeout:
            continue
        if b == d:
            echoed += 1
        else:
            bad += 1
    out(sent=n, echoed=echoed, bad=bad)


def bulk(host, port, mb):
    s = socket.create_connection((host, port), timeout=60)
    data = os.urandom(1 << 20)
    sent_h, got_h = hashlib.sha256(), hashlib.sha256()
    total = mb << 20
    got = [0]
    t0 = time.monotonic()

    def reader():
        while got[0] < total:
            b = s.recv(1 << 16)
            if not b:
                break
            got_h.update(b)
            got[0] += len(b)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(mb):
        chunk = data[i % 7:] + data[:i % 7]
        sent_h.update(chunk)
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    t.join(timeout=120)
    s.close()
    secs = time.monotonic() - t0
    out(sent=total, got=got[0], equal=sent_h.hexdigest() == got_h.hexdigest(), secs=round(secs, 2),
        mbit=round(total * 8 / secs / 1e6, 1))


def churn(host, port, n):
    t0 = time.monotonic()
    socks = [socket.create_connection((host, port), timeout=30) for _ in range(n)]
    chunk = b"x" * 16384
    for rnd in range(8):
        for s in socks:
            s.sendall(chunk)
        for s in socks:
            left = len(chunk)
            while left:
                left -= len(s.recv(left))
    aborted = clean = 0
    for i, s in enumerate(socks):
        if i % 2:
            # Data in flight both ways, then an abortive close (RST).
            s.sendall(chunk)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            aborted += 1
        else:
            s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            got = 0
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += len(b)
            s.close()
            clean += got == len(chunk)
    out(aborted=aborted, clean=clean, secs=round(time.monotonic() - t0, 2))


def flood(iface, src, dst, port, n, first=0):
    # (scapy's modules one by one: scapy.all loads every layer, seconds on a loaded machine)
    from scapy.layers.inet import IP, TCP  # noqa: E402
    from scapy.layers.l2 import Ether  # noqa: E402
    from scapy.arch import get_if_hwaddr  # noqa: E402
    import subprocess
    mac = get_if_hwaddr(iface)
    # The router's MAC from the neighbour table (A pinged it).
    nb = subprocess.run(["ip", "neigh", "show", dst], capture_output=True, text=True).stdout.split()
    rmac = nb[nb.index("lladdr") + 1]
    rnd = random.Random(11)
    # One frame built by scapy, the others from it: the port and sequence
    # number patched and the TCP checksum summed again (scapy takes
    # seconds per thousand frames).
    tmpl = bytearray(bytes(Ether(src=mac, dst=rmac) / IP(src=src, dst=dst) /
                           TCP(sport=1024, dport=port, flags="S", seq=0,
                               options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("WScale", 7)])))
    ihl = (tmpl[14] & 15) * 4
    t0_ = 14 + ihl
    tcp_len = len(tmpl) - t0_
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, tcp_len)
    frames = []
    for i in range(n):
        f = bytearray(tmpl)
        struct.pack_into("!HH", f, t0_, 1024 + ((first + i) % 60000), port)
        struct.pack_into("!I", f, t0_ + 4, rnd.getrandbits(32))
        struct.pack_into("!H", f, t0_ + 16, 0)
        seg = pseudo + bytes(f[t0_:]) + (b"\0" if tcp_len % 2 else b"")
        c = sum(struct.unpack(f"!{len(seg) // 2}H", seg))
        while c >> 16:
            c = (c & 0xffff) + (c >> 16)
        struct.pack_into("!H", f, t0_ + 16, ~c & 0xffff)
        frames.append(bytes(f))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    t0 = time.monotonic()
    for f in frames:
        s.send(f)
    out(sent=n, secs=round(time.monotonic() - t0, 2))


def hold(host, port, mb):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.setblocking(False)
    sent = 0
    data = b"y" * 65536
    t0 = time.monotonic()
    stalled_since = None
    while sent < (mb << 20) and time.monotonic() - t0 < 30:
        try:
            sent += s.send(data)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 3:
                break
            time.sleep(0.05)
    out(sent=sent, stalled=stalled_since is not None, secs=round(time.monotonic() - t0, 2))
    # Held open (never read) until the test's stdin says close.
    sys.stdin.readline()
    s.close()


def blind(iface, host, port):
    from scapy.config import conf  # noqa: E402
    from scapy.layers.inet import IP, TCP  # noqa: E402
    from scapy.packet import Raw  # noqa: E402
    from scapy.sendrecv import AsyncSniffer, send  # noqa: E402
    conf.verb = 0
    res = {}
    s = socket.create_connection((host, port), timeout=5)
    lport = s.getsockname()[1]
    flt = f"tcp and host {host} and port {port}"

    def listening(**kw):
        """An AsyncSniffer started and listening (its started_callback
        seen: a fixed sleep may be too short on a loaded machine)."""
        up = threading.Event()
        sn = AsyncSniffer(iface=iface, started_callback=up.set, **kw)
        sn.start()
        up.wait(30)
        return sn

    def sniff_during(fn, wait=0.6, until=None):
        """The connection's segments while fn() runs and `wait` s after;
        first, up to 10 s, until `until(segments so far)` holds (an
        answer the router owes, which a loaded machine may delay)."""
        got = []
        sn = listening(filter=flt, prn=got.append, store=False)
        fn()

        def ours():
            return [p for p in list(got) if TCP in p and p[TCP].dport == lport or TCP in p and p[TCP].sport == lport]
        end = time.monotonic() + 10
        while until is not None and not until(ours()) and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(wait)
        sn.stop()
        return ours()

    seq = {}

    def echo_ok(msg):
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            b = s.recv(4096)
            if not b:
                return False
            got += b
        if seq:
            seq["snd"] += len(msg)
            seq["rcv"] += len(got)
        return got == msg

    # Learn both sequence numbers from one exchange.
    def both_data(pk):
        return (any(p[TCP].sport == lport and len(p[TCP].payload) > 0 for p in pk)
                and any(p[TCP].dport == lport and len(p[TCP].payload) > 0 for p in pk))
    pk = sniff_during(lambda: echo_ok(b"ping"), until=both_data)
    mine = [p for p in pk if p[TCP].sport == lport and len(p[TCP].payload) > 0]
    theirs = [p for p in pk if p[TCP].dport == lport and len(p[TCP].payload) > 0]
    seq["snd"] = mine[-1][TCP].seq + len(mine[-1][TCP].payload)
    seq["rcv"] = theirs[-1][TCP].seq + len(theirs[-1][TCP].payload)
    me = s.getsockname()[0]
    m32 = 1 << 32

    def seg(flags, off=0, payload=b"", **kw):
        p = IP(src=me, dst=host) / TCP(sport=lport, dport=port, flags=flags, seq=(seq["snd"] + off) % m32,
                                       ack=seq["rcv"] % m32, **kw)
        return p / Raw(payload) if payload else p

    def from_router(pk):
        return [p for p in pk if p[TCP].sport == port]

    def rsts(pk):
        return [p for p in from_router(pk) if p[TCP].flags & 0x04]

    def check(name, mk, expect_ack=False, wait=0.6):
        want_ack = seq["snd"] % m32

        def acked(pk):
            return any(p[TCP].flags & 0x10 and p[TCP].ack == want_ack and not p[TCP].flags & 0x04
                       for p in from_router(pk))
        pk = sniff_during(lambda: send(mk()), wait=wait, until=acked if expect_ack else None)
        r = {"rst_from_router": len(rsts(pk))}
        if expect_ack:
            r["challenge_ack"] = acked(pk)
        r["echo_after"] = echo_ok(name.encode())
        res[name] = r

    # RFC 5961 §3: an RST in the window but not at RCV.NXT.
    check("rst_in_window", lambda: seg("R", 1000), True)
    # RFC 5961 §4: a SYN on the synchronized connection.
    check("syn_in_window", lambda: seg("S", 1000), True)
    # Data far outside the window: an ACK, the data dropped.
    check("out_of_window", lambda: seg("PA", 1 << 30, b"zzzzzzzzzz"), True)
    # An MSS option of length 3 on a data segment at RCV.NXT: dropped
    # (neither a RST nor data in the stream).
    check("bad_option", lambda: seg("PA", 0, b"BADOPT", options=[(2, b"\x05")]))
    # A bad checksum at RCV.NXT: dropped.
    check("bad_checksum", lambda: seg("PA", 0, b"BADSUM", chksum=0x1234))
    # 1,000 one-byte segments with holes between them, ahead in the window.
    check("ooo_flood", lambda: [seg("A", 20000 + 2 * i, b"o") for i in range(1000)], wait=1.0)
    s.close()

    # A SYN with data to the listener: the SYN,ACK acknowledges the SYN only.
    sport = 40000 + random.Random(3).randrange(1000)
    isn = 123456789
    syn = IP(dst=host) / TCP(sport=sport, dport=port, flags="S", seq=isn, options=[("MSS", 1460)]) / Raw(b"hello")
    got = []
    sn = listening(filter=f"tcp and src port {port} and dst port {sport}", prn=got.append, store=False)
    send(syn)
    end = time.monotonic() + 10
    while not got and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.6)
    sn.stop()
    sa = [p for p in got if p[TCP].flags & 0x12 == 0x12]
    res["syn_with_data"] = {"synack": len(sa) > 0, "ack_is_isn_plus_1": bool(sa) and sa[0][TCP].ack == isn + 1}
    send(IP(dst=host) / TCP(sport=sport, dport=port, flags="R", seq=isn + 1))

    # A SYN with a bad checksum and one with a malformed option: no answer.
    for name, pkt in (("syn_bad_checksum", IP(dst=host) / TCP(sport=sport + 1, dport=port, flags="S", seq=1,
                                                              chksum=0x4321)),
                      ("syn_bad_option", IP(dst=host) / TCP(sport=sport + 2, dport=port, flags="S", seq=1,
                                                            options=[(3, b"")]))):
        dport = pkt[TCP].sport
        sn = listening(filter=f"tcp and src port {port} and dst port {dport}", store=True)
        send(pkt)
        time.sleep(0.6)
        res[name] = {"answers": len(sn.stop())}
    out(**res)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "concurrent":
        concurrent(args[0], int(args[1]), int(args[2]))
    elif mode == "udp":
        udp(args[0], int(args[1]), int(args[2]))
    elif mode == "bulk":
        bulk(args[0], int(args[1]), int(args[2]))
    elif mode == "churn":
        churn(args[0], int(args[1]), int(args[2]))
    elif mode == "flood":
        flood(args[0], args[1], args[2], int(args[3]), int(args[4]), int(args[5]) if len(args) > 5 else 0)
    elif mode == "blind":
        blind(args[0], args[1], int(args[2]))
    elif mode == "hold":
        hold(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
