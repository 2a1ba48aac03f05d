"""pf in the data path: a default-deny ruleset loaded from the config.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (echo servers)

The ruleset is lib_pf.DEFAULT_DENY (`block log all`, `pass out`, `pass in
on r0 proto tcp to port { ssh 5201 }`, `pass proto icmp`, return-rst on
telnet, return-icmp on UDP 9999). Checks:

1. TCP to B:22 works and shows a pair of ESTABLISHED:ESTABLISHED states
   (in on r0, out on r1) in `pfctl -ss`; TCP to B:80 is dropped (the
   client times out although B listens); ping passes with ICMP states;
   `ping -s 4000` passes the stateful ICMP rule: pf sees whole datagrams
   (state counts 1 packet per echo, 4028 bytes) and the router
   re-fragments them.
2. Blocked packets are counted (`-sr -v` Packets of `block drop log all`,
   `-si` match, netstat -s "blocked by the packet filter") and logged:
   `tcpdump -n -e -r pflog.pcap` decodes `rule 0/...block in on r0:
   10.0.1.2.P > 10.0.2.2.80` lines, one per blocked SYN.
3. `block return-rst` on port 23: connect() fails with ECONNREFUSED at once
   (B listens on 23); `block return-icmp` on UDP 9999: a connected UDP
   socket gets ECONNREFUSED (port unreachable) although B echoes on 9999;
   a 4000-byte datagram to 9999 (3 fragments) is refused as a whole and
   none of its fragments reaches B (pf reassembles before filtering); UDP
   9998 (plain block) just times out.
4. IP options without allow-opts: `ping -R` (Record Route) gets no reply,
   and pflog shows the echo request although `pass proto icmp` does not
   log: pf logs packets it drops for IP options in any case (pf_test's
   PF_LOG_FORCE), under the rule that passed them, with reason ip-option.
5. Crafted with scapy in A: a null scan, FIN scan, Xmas scan without ACK
   and SYN+RST to B:22 are dropped by pf_normalize_tcp before any rule
   (-si normalize grows by each, no state, nothing in pflog though `block
   log all` would have logged them); SYN+FIN to B:22 passes as a SYN (FIN
   cleared, checksum updated): B's Linux, which discards SYN+FIN, answers
   with SYN-ACK; UDP and TCP to port 0 and a TCP data offset of 4 are
   dropped as pf_setup_pdesc's `short` (-si short) and logged anyway
   (PF_LOG_FORCE, reason short).
6. pf_norm.c reassembly: an echo request in fragments that overlap (the
   newcomer's head trimmed, held fragments it covers replaced) completes
   and B answers; 65 fragments of 8 octets (one entry point past
   PF_FRAG_ENTRY_LIMIT) are refused (-si fragment +1, no answer), 64 pass;
   fragments with DF set are refused (pf_normalize_ip).
   pf_walk_header: a ping whose options are four NOPs is dropped
   (ip-option); IGMP with only a router alert passes `pass in proto igmp`
   (a state appears), IGMP with NOP padding does not.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, netstat_s_counters, nft_counters, wait_until  # noqa: E402
from lib_pf import A_IP, B_IP, PfLab  # noqa: E402

BLOCK_ALL = "block drop log all"


def run_test():
    with Topo("pfr") as t:
        t.step("topology A -- softnet -- B; pf.conf (default deny) and pflog from the config")
        lab = PfLab(t)
        rules = lab.rules()
        log("  pfctl -sr:\n    " + rules.strip().replace("\n", "\n    "))
        for want in (BLOCK_ALL, "pass out all flags S/SA", "pass in on r0 proto tcp from any to any port = 22 flags S/SA",
                     "pass proto icmp all", "block return-rst in log on r0 proto tcp from any to any port = 23"):
            check(want in rules.splitlines(), f"-sr has no line {want!r}:\n{rules}")
        check(lab.info()["status"] == "Enabled", "pf not enabled after start")

        # ---- 1. ssh passes and is tracked -----------------------------------
        t.step("1. TCP to B:22 passes; the connection shows as ESTABLISHED:ESTABLISHED states")
        lab.expect_tcp(22, "ok", "ssh port")
        h = lab.hold(22, secs=120, gap=0.2)
        h.wait_more(3)
        lp = h.lport
        st_in = rf"^all tcp {B_IP}:22 <- {A_IP}:{lp}\s+ESTABLISHED:ESTABLISHED$"
        st_out = rf"^all tcp {A_IP}:{lp} -> {B_IP}:22\s+ESTABLISHED:ESTABLISHED$"
        wait_until("the ssh states", lambda: lab.states_matching(st_in) and lab.states_matching(st_out), timeout=5)
        sv = lab.pfctl("-ss", "-v").stdout
        m = re.search(rf"^all tcp {B_IP}:22 <- {A_IP}:{lp} .*\n.*\n\s+age [\d:]+, expires in [\d:]+, (\d+):(\d+) pkts", sv,
                      re.M)
        check(m and int(m.group(1)) >= 3 and int(m.group(2)) >= 3, f"-ss -v: no packet counts for the ssh state:\n{sv}")
        log(f"  states: {lab.states_matching(':%d ' % lp)}")
        h.wait_more(2)
        h.stop()

        t.step("1. TCP to B:80 (B listens) is dropped: the client times out")
        base_block = lab.rule_v(BLOCK_ALL)["packets"]
        base_si = lab.info()["match"]
        base_ns = netstat_s_counters(lab.d.out("netstat", "-s"))["ip: packets blocked by the packet filter"]
        r = lab.expect_tcp(80, "timeout", "port 80", tmo=3.0)
        check(r["secs"] >= 2.5, f"port 80: gave up after {r['secs']} s")
        check(not lab.states_matching(rf"{B_IP}:80\b"), f"a state for port 80: {lab.states()}")

        t.step("1. ping passes with ICMP states")
        before = set(lab.states_matching(r"^all icmp "))
        out = lab.ping("-c 3 -i 0.3 -W 2")
        check(re.search(r"3 packets transmitted, [123] received", out), f"ping got no replies:\n{out}")
        new = [s for s in lab.states_matching(rf"^all icmp {B_IP}:\d+ <- {A_IP}:\d+ ") if s not in before]
        check(new, f"no ICMP state after ping: {lab.states()}")
        log(f"  {new}")

        t.step("1. ping -s 4000: pf filters the reassembled datagram, the router re-fragments")
        c0 = netstat_s_counters(lab.d.out("netstat", "-s"))
        before = set(lab.states_matching(r"^all icmp "))
        out = lab.ping("-c 3 -i 0.3 -W 2 -s 4000")
        check(re.search(r"4008 bytes from 10\.0\.2\.2", out), f"no 4008-byte replies:\n{out}")
        sv = lab.pfctl("-ss", "-v").stdout
        # pfctl prints an echo state's key: B's side carries the type (8),
        # A's side the echo id, which tells this ping's state from older ones.
        big = re.findall(rf"^all icmp {B_IP}:\d+ <- {A_IP}:(\d+) .*\n\s+age [\d:]+, expires in [\d:]+, "
                         r"(\d+):(\d+) pkts, (\d+):(\d+) bytes", sv, re.M)
        big = [b for b in big if f"<- {A_IP}:{b[0]} " not in "".join(before) and int(b[3]) >= 4028]
        check(big, f"no ICMP state with whole 4028-byte datagrams:\n{sv}")
        pk_in, pk_out, by_in, by_out = (int(x) for x in big[-1][1:])
        # Each echo request and reply counted once, as a whole datagram (3 fragments on the wire).
        check(by_in == 4028 * pk_in and by_out == 4028 * pk_out and pk_in >= 1 and pk_out >= 1,
              f"fragmented ping state counts {pk_in}:{pk_out} pkts {by_in}:{by_out} bytes (want 4028 per packet)")
        c1 = netstat_s_counters(lab.d.out("netstat", "-s"))
        frag = c1["ip: output datagrams fragmented"] - c0["ip: output datagrams fragmented"]
        check(frag >= pk_in + pk_out,
              f"router fragmented {frag} datagrams, pf passed {pk_in} requests + {pk_out} replies (all need fragmenting)")
        log(f"  state {pk_in}:{pk_out} pkts {by_in}:{by_out} bytes; router fragmented {frag} datagrams")

        # ---- 2. counted and logged -------------------------------------------
        t.step("2. the blocked SYNs are counted (-sr -v, -si, netstat -s) and logged in pflog")
        blk = lab.rule_v(BLOCK_ALL)
        check(blk["packets"] >= base_block + 2,
              f"block rule packets {base_block} -> {blk['packets']} after >= 2 SYNs to port 80")
        check(blk["evaluations"] >= blk["packets"], f"block rule: {blk}")
        si = lab.info()
        check(si["match"] >= base_si + 2, f"-si match {base_si} -> {si['match']}")
        ns_blocked = netstat_s_counters(lab.d.out("netstat", "-s"))["ip: packets blocked by the packet filter"]
        check(ns_blocked >= base_ns + 2, f"netstat -s blocked {base_ns} -> {ns_blocked}")
        log(f"  block rule {blk}; -si match {si['match']}; netstat blocked {ns_blocked}")
        lines = lab.wait_pflog(rf"rule 0/.*block in on r0: {re.escape(A_IP)}\.\d+ > {re.escape(B_IP)}\.80: Flags \[S\]")
        check(len(lines) >= 2, f"pflog: {len(lines)} SYNs to port 80 logged, want >= 2 (retransmission)")
        log(f"  pflog: {lines[0]}")
        # No passed traffic is logged (only `log` rules are): nothing for port 22 or ICMP.
        everything = lab.pflog_lines()
        check(not [l for l in everything if f"{B_IP}.22:" in l or "ICMP" in l],
              "pflog has passed packets:\n" + "\n".join(everything))

        # ---- 3. return-rst and return-icmp ------------------------------------
        t.step("3. block return-rst on port 23: connection refused at once (B listens on 23)")
        r = lab.expect_tcp(23, "refused", "telnet port", tmo=5.0)
        check(r["secs"] < 1.5, f"refused only after {r['secs']} s")
        lab.wait_pflog(rf"rule 5/.*block in on r0: {re.escape(A_IP)}\.\d+ > {re.escape(B_IP)}\.23: Flags \[S\]")

        t.step("3. block return-icmp on UDP 9999: port unreachable -> ECONNREFUSED (B echoes on 9999)")
        r = None
        for _ in range(3):
            r = lab.udp(9999, tmo=3.0)
            if r["result"] == "refused":
                break
        check(r["result"] == "refused" and r["secs"] < 1.5, f"UDP 9999: {r}, want refused at once")
        lab.wait_pflog(rf"rule 6/.*block in on r0: {re.escape(A_IP)}\.\d+ > {re.escape(B_IP)}\.9999: UDP")
        t.step("3. a fragmented 4000-byte datagram to UDP 9999: refused as a whole, no fragment reaches B")
        t.ns_run(lab.net.b, "nft -f -", input=(
            "table inet snpf_frag {\n chain pre {\n  type filter hook prerouting priority -450;\n"
            '  ip saddr 10.0.1.2 ip frag-off & 0x3fff != 0 counter comment "frag"\n }\n}\n'))
        r = None
        for _ in range(3):
            r = lab.udp(9999, tmo=3.0, size=4000)
            if r["result"] == "refused":
                break
        check(r["result"] == "refused", f"fragmented UDP 9999: {r}, want refused")
        lab.wait_pflog(rf"rule 6/.*block in on r0: {re.escape(A_IP)}\.\d+ > {re.escape(B_IP)}\.9999: UDP, length 4000")
        frags = nft_counters(t, lab.net.b, "snpf_frag").get("frag")
        check(frags == 0, f"{frags} fragments of blocked datagrams reached B")
        r = lab.udp(9998, tmo=2.0)
        check(r["result"] == "timeout", f"UDP 9998 (plain block): {r}, want timeout")
        lab.wait_pflog(rf"rule 0/.*block in on r0: {re.escape(A_IP)}\.\d+ > {re.escape(B_IP)}\.9998: UDP")

        # ---- 4. forced logging ------------------------------------------------
        t.step("4. ping -R (IP options) is dropped and logged without a log rule (reason ip-option)")
        p = t.ns_run(lab.net.a, f"ping -n -R -c 1 -W 1 {B_IP}", check_rc=False)
        check(p.returncode != 0, f"ping -R passed:\n{p.stdout}")
        lines = lab.wait_pflog(rf"rule 4/.*\(ip-option\): pass in on r0: {re.escape(A_IP)} > {re.escape(B_IP)}: ICMP echo request")
        log(f"  pflog: {lines[0]}")

        # ---- 5. pf_normalize_tcp and pf_setup_pdesc -------------------------------
        t.step("5. null/FIN/Xmas scans and SYN+RST to B:22: dropped before the rules, counted normalize, not logged")
        scans = {"": 61001, "F": 61002, "FPU": 61003, "SR": 61004}
        si0 = lab.info()
        lab.scapy(f"for flags, sport in {scans!r}.items():\n"
                  f"    send(IP(dst='{B_IP}')/TCP(sport=sport, dport=22, flags=flags, seq=1000), count=3)\n")
        n = 3 * len(scans)
        wait_until(f"-si normalize +{n}", lambda: lab.info()["normalize"] >= si0["normalize"] + n, timeout=10)
        si = lab.info()
        check(si["normalize"] == si0["normalize"] + n,
              f"-si normalize {si0['normalize']} -> {si['normalize']}, want +{n}")
        check(not lab.states_matching(r":6100[1-4]\b"), f"states for the scans: {lab.states()}")
        logged = [l for l in lab.pflog_lines() if re.search(r"\.6100[1-4] > ", l)]
        check(not logged, "scans reached the rules (logged by block log all):\n" + "\n".join(logged))
        log(f"  -si normalize {si0['normalize']} -> {si['normalize']}")

        t.step("5. SYN+FIN to B:22 passes as a SYN with a valid checksum: B answers SYN-ACK")
        r = lab.scapy(f"a = sr1(IP(dst='{B_IP}')/TCP(sport=61005, dport=22, flags='SF', seq=5000),"
                      " timeout=3, retry=2)\n"
                      "print(json.dumps(None if a is None or TCP not in a else "
                      "{'flags': str(a[TCP].flags), 'ack': a[TCP].ack}))\n")
        check(r and r["flags"] == "SA" and r["ack"] == 5001, f"SYN+FIN to B:22: answer {r}, want SYN-ACK acking 5001")
        check(lab.states_matching(rf"{A_IP}:61005\b"), f"no state for the SYN+FIN: {lab.states()}")
        log(f"  answer {r}")

        t.step("5. UDP and TCP to port 0, a TCP data offset of 4: dropped as short, logged without a log rule")
        si0 = lab.info()
        lab.scapy(f"send(IP(dst='{B_IP}')/UDP(sport=61006, dport=0)/Raw(b'zero'), count=2)\n"
                  f"send(IP(dst='{B_IP}')/TCP(sport=61007, dport=0, flags='A', seq=1, ack=1), count=2)\n"
                  f"send(IP(dst='{B_IP}')/TCP(sport=61008, dport=22, flags='A', dataofs=4), count=2)\n")
        wait_until("-si short +6", lambda: lab.info()["short"] >= si0["short"] + 6, timeout=10)
        si = lab.info()
        check(si["short"] == si0["short"] + 6, f"-si short {si0['short']} -> {si['short']}, want +6")
        check(si["match"] == si0["match"], f"-si match {si0['match']} -> {si['match']}: a short packet met the rules")
        # Reason 3 (short) under the default rule. tcpdump 4.99's reason table
        # files "3(short)" under PFRES_NORM by mistake, so it prints unkn(3).
        for sport in (61006, 61007, 61008):
            lines = lab.wait_pflog(rf"rule 4294967295/(?:3\(short\)|unkn\(3\)): block in on r0: "
                                   rf"{re.escape(A_IP)}\.{sport} > ")
            check(len(lines) == 2, f"pflog: {len(lines)} records for port {sport}, want 2:\n" + "\n".join(lines))
        log(f"  -si short {si0['short']} -> {si['short']}; pflog: {lines[0]}")

        # ---- 6. pf_norm.c reassembly and pf_walk_header options ------------------
        t.step("6. overlapping fragments are trimmed as pf_reassemble does: the echo request completes, B answers")
        # The sniffer says when it listens (started_callback): a reply sent
        # before would be missed, and scapy's start on a loaded machine can
        # outlast any fixed sleep.
        echo = ("import threading\n"
                "def echo(ident, icmp, cuts, df=0):\n"
                "    frags = [IP(dst='" + B_IP + "', id=ident, proto=1, frag=a // 8,\n"
                "                flags=(1 if b < len(icmp) else 0) | df) / Raw(icmp[a:b]) for a, b in cuts]\n"
                "    up = threading.Event()\n"
                "    s = AsyncSniffer(lfilter=lambda p: ICMP in p and p[ICMP].type == 0 and p[ICMP].id == ident,\n"
                "                     count=1, started_callback=up.set)\n"
                "    s.start(); up.wait(30); send(frags); s.join(timeout=4)\n"
                "    if s.running:\n"
                "        s.stop()\n"
                "    return len(s.results or [])\n"
                "def icmp(ident, n):\n"
                "    return raw(ICMP(type=8, id=ident, seq=1) / Raw(b'Q' * (n - 8)))\n")
        # 0..16, then 8..24 (its head trimmed to 16..24), then the last 24..32:
        # the old reassembler dropped the second one and the datagram never completed.
        r = lab.scapy(echo + "print(json.dumps(echo(0x5151, icmp(0x5151, 32), [(0, 16), (8, 24), (24, 32)])))\n")
        check(r == 1, f"overlapping fragments: {r} echo replies, want 1")
        # A fragment covering held ones whole replaces them.
        r = lab.scapy(echo + "print(json.dumps(echo(0x5152, icmp(0x5152, 32), [(8, 16), (16, 32), (0, 24)])))\n")
        check(r == 1, f"a fragment covering held ones: {r} echo replies, want 1")

        t.step("6. 65 fragments in one 4096-octet entry point drop the datagram (PF_FRAG_ENTRY_LIMIT 64); 64 pass")
        si0 = lab.info()
        cuts = lambda n: [(i * 8, i * 8 + 8) for i in range(n)]  # noqa: E731
        r = lab.scapy(echo + f"print(json.dumps(echo(0x5153, icmp(0x5153, 65 * 8), {cuts(65)!r})))\n")
        check(r == 0, f"65 fragments: {r} echo replies, want none")
        si = lab.info()
        check(si["fragment"] == si0["fragment"] + 1, f"-si fragment {si0['fragment']} -> {si['fragment']}, want +1")
        r = lab.scapy(echo + f"print(json.dumps(echo(0x5154, icmp(0x5154, 64 * 8), {cuts(64)!r})))\n")
        check(r == 1, f"64 fragments: {r} echo replies, want 1")
        log(f"  -si fragment {si0['fragment']} -> {si['fragment']}")

        t.step("6. fragments with DF set are refused (pf_normalize_ip), counted as fragment")
        si0 = lab.info()
        r = lab.scapy(echo + "print(json.dumps(echo(0x5156, icmp(0x5156, 32), [(0, 16), (16, 32)], df=2)))\n")
        check(r == 0, f"DF fragments: {r} echo replies, want none")
        si = lab.info()
        check(si["fragment"] == si0["fragment"] + 2, f"-si fragment {si0['fragment']} -> {si['fragment']}, want +2")

        t.step("6. IP options of NOP padding only are options: a ping carrying them is dropped (ip-option)")
        si0 = lab.info()
        r = lab.scapy(f"a = sr1(IP(dst='{B_IP}', options=[IPOption_NOP()] * 4) / ICMP(id=0x5155), timeout=2)\n"
                      "print(json.dumps(a is not None))\n")
        check(r is False, "a ping with NOP-only options was answered")
        si = lab.info()
        check(si["ip-option"] == si0["ip-option"] + 1, f"-si ip-option {si0['ip-option']} -> {si['ip-option']}, want +1")

        t.step("6. IGMP with only a router alert passes a rule without allow-opts; with NOP padding it does not")
        lab.write_rules(open(lab.conf).read() + "pass in on $a_if proto igmp\n")
        lab.pfctl("-f", lab.conf)
        igmp = "Raw(bytes([0x16, 0, 0, 0, 239, 1, 1, 1]))"
        lab.scapy(f"send(IP(dst='{B_IP}', proto=2, options=[IPOption_Router_Alert()]) / {igmp})\n")
        wait_until("a state for the IGMP report", lambda: lab.states_matching(rf"igmp {re.escape(A_IP)} -> "), timeout=5)
        si0 = lab.info()
        lab.scapy(f"send(IP(dst='{B_IP}', src='10.0.1.3', proto=2, options=[IPOption_NOP()] * 4) / {igmp})\n")
        wait_until("-si ip-option +1", lambda: lab.info()["ip-option"] == si0["ip-option"] + 1, timeout=5)
        check(not lab.states_matching(r"igmp 10\.0\.1\.3 "), f"a state for the NOP-padded IGMP: {lab.states()}")
        log("  " + lab.states_matching(r"igmp ")[0].strip())

        t.step("ssh still passes at the end; the daemon is alive")
        lab.expect_tcp(22, "ok", "ssh port")
        check(lab.d.alive(), "daemon died")


if __name__ == "__main__":
    main(run_test)
