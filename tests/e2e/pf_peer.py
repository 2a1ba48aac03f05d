"""Socket peers for the pf end-to-end tests (not a test itself); run inside
a namespace with `python3 pf_peer.py MODE ...`. Every mode is bounded in
time and prints one JSON object per line on stdout.

    serve TCPPORTS UDPPORTS SECS   echo servers (ports comma-separated), for SECS at most
    connect HOST PORT TIMEOUT [SRC]  TCP connect (from address SRC) + one echo:
                                   {"result": ok|refused|timeout|error, "secs"}
    udp HOST PORT TIMEOUT [SIZE]   connected UDP send + recv: {"result": echo|refused|timeout|error}
    hold HOST PORT SECS GAP TMO [SRC]  one TCP connection (from SRC), an echo every GAP s for SECS s; each
                                   exchange must answer within TMO s. Prints {"connected": lport},
                                   {"ok": n} per exchange, then {"done": n} or {"fail": why, "n": n}
"""

import errno
import json
import socket
import sys
import threading
import time


def out(**kw):
    print(json.dumps(kw), flush=True)


def serve(tcp_ports, udp_ports, secs):
    def tcp_conn(c):
        c.settimeout(secs)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        finally:
            c.close()

    def tcp_listener(port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        while True:
            c, _ = s.accept()
            threading.Thread(target=tcp_conn, args=(c,), daemon=True).start()

    def udp_listener(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        while True:
            b, peer = s.recvfrom(65536)
            s.sendto(b, peer)

    for p in tcp_ports:
        threading.Thread(target=tcp_listener, args=(p,), daemon=True).start()
    for p in udp_ports:
        threading.Thread(target=udp_listener, args=(p,), daemon=True).start()
    out(serving=True)
    time.sleep(secs)


def classify(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
        return "refused"
    if getattr(e, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return f"error: {e!r}"


def connect(host, port, tmo, src=None):
    t0 = time.monotonic()
    s = socket.socket()
    s.settimeout(tmo)
    try:
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        s.sendall(b"hello\n")
        b = b""
        while len(b) < 6:
            r = s.recv(64)
            if not r:
                break
            b += r
        res = "ok" if b == b"hello\n" else f"error: echo {b!r}"
    except OSError as e:
        res = classify(e)
    finally:
        s.close()
    out(result=res, secs=round(time.monotonic() - t0, 3))


def udp(host, port, tmo, size=4):
    t0 = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(tmo)
    msg = (b"ping" * (size // 4 + 1))[:size]
    try:
        s.connect((host, port))
        s.send(msg)
        b = s.recv(65536)
        res = "echo" if b == msg else f"error: {b[:16]!r}... ({len(b)} bytes)"
    except OSError as e:
        res = classify(e)
    finally:
        s.close()
    out(result=res, secs=round(time.monotonic() - t0, 3))


def hold(host, port, secs, gap, tmo, src=None):
    s = socket.socket()
    s.settimeout(tmo)
    n = 0
    try:
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        out(connected=s.getsockname()[1])
        end = time.monotonic() + secs
        while time.monotonic() < end:
            msg = f"seq {n}\n".encode()
            s.sendall(msg)
            b = b""
            while len(b) < len(msg):
                r = s.recv(64)
                if not r:
                    raise OSError("connection closed")
                b += r
            if b != msg:
                raise OSError(f"bad echo {b!r}")
            n += 1
            out(ok=n)
            time.sleep(gap)
    except OSError as e:
        out(fail=classify(e), n=n)
        sys.exit(1)
    finally:
        s.close()
    out(done=n)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    if mode == "serve":
        serve(ints(args[0]), ints(args[1]), float(args[2]))
    elif mode == "connect":
        connect(args[0], int(args[1]), float(args[2]), args[3] if len(args) > 3 else None)
    elif mode == "udp":
        udp(args[0], int(args[1]), float(args[2]), int(args[3]) if len(args) > 3 else 4)
    elif mode == "hold":
        hold(args[0], int(args[1]), float(args[2]), float(args[3]), float(args[4]), args[5] if len(args) > 5 else None)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
