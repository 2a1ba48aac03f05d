"""A user-space netem for kernels without sch_netem: forwards Ethernet
frames between two interfaces (AF_PACKET) with loss, duplication,
reordering and delay drawn from a seeded generator.

    python3 impair.py IF1 IF2 --loss 1 --dup 1 --reorder 1 --delay-ms 10 --seed 7 [--seconds N]

Every frame waits `delay` (a timed queue); `reorder` % of them go at once,
ahead of the queue (netem's `reorder`); `loss` % are dropped, `dup` %
sent twice. Runs until killed (or --seconds), then prints its counts.
"""

import argparse
import heapq
import random
import select
import socket
import sys
import time

ETH_P_ALL = 3
PACKET_OUTGOING = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("if1")
    ap.add_argument("if2")
    ap.add_argument("--loss", type=float, default=0)
    ap.add_argument("--dup", type=float, default=0)
    ap.add_argument("--reorder", type=float, default=0)
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3600)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    socks = []
    for name in (a.if1, a.if2):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.bind((name, 0))
        s.setblocking(False)
        socks.append(s)
    other = {socks[0].fileno(): socks[1], socks[1].fileno(): socks[0]}
    delay = a.delay_ms / 1000.0
    queue = []  # (due, seq, sock, frame)
    seq = 0
    n = {"in": 0, "lost": 0, "dup": 0, "reordered": 0, "out": 0}
    end = time.monotonic() + a.seconds
    poller = select.poll()
    for s in socks:
        poller.register(s.fileno(), select.POLLIN)
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, s, f = heapq.heappop(queue)
                try:
                    s.send(f)
                    n["out"] += 1
                except OSError:
                    pass
            timeout = 100 if not queue else max(0, (queue[0][0] - time.monotonic()) * 1000)
            for fd, _ in poller.poll(timeout):
                src = socks[0] if fd == socks[0].fileno() else socks[1]
                for _ in range(64):
                    try:
                        f, addr = src.recvfrom(65535)
                    except BlockingIOError:
                        break
                    if addr[2] == PACKET_OUTGOING:
                        continue
                    n["in"] += 1
                    r = rnd.random() * 100
                    if r < a.loss:
                        n["lost"] += 1
                        continue
                    copies = 1
                    if rnd.random() * 100 < a.dup:
                        copies = 2
                        n["dup"] += 1
                    due = time.monotonic() + delay
                    if rnd.random() * 100 < a.reorder:
                        due = 0
                        n["reordered"] += 1
                    for _ in range(copies):
                        seq += 1
                        heapq.heappush(queue, (due, seq, other[fd], f))
    except KeyboardInterrupt:
        pass
    finally:
        print(" ".join(f"{k}={v}" for k, v in n.items()), flush=True)


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(main())
