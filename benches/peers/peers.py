#!/usr/bin/env python3
"""Helpers for benches/peers/run.sh (Python 3.9+, needs the `maxminddb` package).

  peers.py free-port
  peers.py gen-queries --db CITY.mmdb --out queries.bin --subnets subnets.txt --count N --seed S
  peers.py agreement --db CITY.mmdb --server 127.0.0.1:PORT --subnets subnets.txt --limit N
  peers.py tree-cpu PID          # utime+stime ticks of PID and all its descendants
  peers.py tree-rss PID          # VmRSS (kB) of PID and all its descendants
  peers.py table results.tsv agreement.tsv startup.tsv LOADGEN

Sites and addresses are those of config/example.yaml (geo name `app.geo.example`).
"""

import json
import math
import os
import random
import socket
import statistics
import struct
import sys

SITES = [  # name, latitude, longitude, IPv4 answer (config/example.yaml)
    ("london", 51.51, -0.13, "192.0.2.1"),
    ("frankfurt", 50.11, 8.68, "192.0.2.2"),
    ("seattle", 47.61, -122.33, "192.0.2.3"),
    ("singapore", 1.35, 103.82, "192.0.2.4"),
]
ZONE = "geo.example."

# IPv4 ranges no ECS subnet is drawn from (special-purpose, private, multicast, reserved).
SPECIAL_V4 = [
    ("0.0.0.0", 8), ("10.0.0.0", 8), ("100.64.0.0", 10), ("127.0.0.0", 8), ("169.254.0.0", 16),
    ("172.16.0.0", 12), ("192.0.0.0", 24), ("192.0.2.0", 24), ("192.88.99.0", 24),
    ("192.168.0.0", 16), ("198.18.0.0", 15), ("198.51.100.0", 24), ("203.0.113.0", 24),
    ("224.0.0.0", 3),
]


def _v4int(a):
    return struct.unpack("!I", socket.inet_aton(a))[0]


SPECIAL_MASKS = [(_v4int(a), (0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF) for a, p in SPECIAL_V4]


def is_special(n):
    return any((n & m) == a for a, m in SPECIAL_MASKS)


def haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def nearest_site(lat, lon):
    return min(SITES, key=lambda s: (haversine_km(lat, lon, s[1], s[2]), s[0]))[0]


def location(rec):
    """(lat, lon) of a GeoIP2-City (or flat ip-location-db) record, or None."""
    if not rec:
        return None
    loc = rec.get("location") or {}
    lat, lon = loc.get("latitude", rec.get("latitude")), loc.get("longitude", rec.get("longitude"))
    if lat is None or lon is None:
        return None
    return float(lat), float(lon)


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def build_query(name, qtype, subnet24, qid=0):
    """A query with EDNS (UDP size 1232) and an ECS option for subnet24 (a.b.c.0/24)."""
    header = struct.pack("!HHHHHH", qid, 0x0000, 1, 0, 0, 1)
    question = encode_name(name) + struct.pack("!HH", qtype, 1)
    addr = socket.inet_aton(subnet24)[:3]
    ecs = struct.pack("!HBB", 1, 24, 0) + addr
    option = struct.pack("!HH", 8, len(ecs)) + ecs
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    return header + question + opt


def skip_name(msg, at):
    while True:
        n = msg[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:
            return at + 2
        at += n + 1


def parse_answer(msg):
    """(rcode, [IPv4 addresses in ANSWER], ECS scope or None)."""
    _, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    at = 12
    for _ in range(qd):
        at = skip_name(msg, at) + 4
    addrs, scope = [], None
    for i in range(an + ns + ar):
        at = skip_name(msg, at)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[at:at + 10])
        at += 10
        rdata = msg[at:at + rdlen]
        if i < an and rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(rdata))
        if rtype == 41:
            o = 0
            while o + 4 <= len(rdata):
                code, olen = struct.unpack("!HH", rdata[o:o + 4])
                if code == 8 and olen >= 4:
                    scope = rdata[o + 7]
                o += 4 + olen
        at += rdlen
    return flags & 0x0F, addrs, scope


def cmd_free_port():
    """A port free on 127.0.0.1 for both UDP and TCP (never 53: the kernel gives >= 1024)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        print(port)
        return
    sys.exit("no free port")


def cmd_gen_queries(args):
    import maxminddb

    db = maxminddb.open_database(args["--db"])
    count, rng = int(args["--count"]), random.Random(int(args["--seed"]))
    used, subnets, out = set(), [], bytearray()
    kinds = {"app": 0, "nx": 0, "soa": 0}
    while len(subnets) < count:
        n = rng.getrandbits(24) << 8
        if n in used or is_special(n):
            continue
        addr = socket.inet_ntoa(struct.pack("!I", n))
        if location(db.get(addr)) is None:
            continue  # a routable subnet is one the City database places
        used.add(n)
        r = rng.random()
        if r < 0.85:
            name, qtype, kind = "app." + ZONE, 1, "app"
        elif r < 0.95:
            name, qtype, kind = "nx%08x.%s" % (rng.getrandbits(32), ZONE), 1, "nx"
        else:
            name, qtype, kind = ZONE, 6, "soa"
        kinds[kind] += 1
        q = build_query(name, qtype, addr)
        out += struct.pack("!H", len(q)) + q
        subnets.append((kind, addr))
    with open(args["--out"], "wb") as f:
        f.write(out)
    with open(args["--subnets"], "w") as f:
        for kind, addr in subnets:
            f.write("%s %s/24\n" % (kind, addr))
    print("%d queries (%s), %d distinct /24 subnets, %d bytes" % (
        count, ", ".join("%s %d" % kv for kv in kinds.items()), len(used), len(out)))


def cmd_agreement(args):
    import maxminddb

    db = maxminddb.open_database(args["--db"])
    host, port = args["--server"].rsplit(":", 1)
    limit = int(args["--limit"])
    by_addr = {s[3]: s[0] for s in SITES}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, int(port)))
    sock.settimeout(1.0)
    asked = agree = unanswered = 0
    scopes, wrong = [], []
    with open(args["--subnets"]) as f:
        for line in f:
            kind, cidr = line.split()
            if kind != "app":
                continue
            if asked >= limit:
                break
            addr = cidr.split("/")[0]
            loc = location(db.get(addr))
            if loc is None:
                continue
            want = nearest_site(*loc)
            qid = (asked * 7 + 1) & 0xFFFF
            sock.send(build_query("app." + ZONE, 1, addr, qid))
            asked += 1
            msg = None
            for _ in range(3):
                try:
                    m = sock.recv(4096)
                except socket.timeout:
                    break
                if m[:2] == struct.pack("!H", qid):
                    msg = m
                    break
            if msg is None:
                unanswered += 1
                continue
            _, addrs, scope = parse_answer(msg)
            got = by_addr.get(addrs[0]) if addrs else None
            if scope is not None:
                scopes.append(scope)
            if got == want:
                agree += 1
            elif len(wrong) < 5:
                wrong.append("%s: want %s got %s" % (cidr, want, got))
    print(json.dumps({
        "asked": asked, "agree": agree, "unanswered": unanswered,
        "pct": round(100.0 * agree / max(asked, 1), 2),
        "scope_median": statistics.median(scopes) if scopes else None,
        "examples_of_disagreement": wrong,
    }))


def _children():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(d))
    return kids


def _tree(pid):
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cmd_tree_cpu(pid):
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    print(total)


def cmd_tree_rss(pid):
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    print(total)


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, nd=0):
    if x is None:
        return "—"
    return ("{:,.%df}" % nd).format(x)


def cmd_table(results, agreement, startup, loadgen):
    rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
    head, rows = rows[0], rows[1:]
    rows = [dict(zip(head, r)) for r in rows if r[0] == loadgen]
    agree = {}
    if os.path.exists(agreement):
        for l in open(agreement):
            p = l.rstrip("\n").split("\t")
            if len(p) >= 2 and p[0] != "server":
                agree[p[0]] = p[1]
    starts = {}
    if os.path.exists(startup):
        for l in open(startup):
            p = l.rstrip("\n").split("\t")
            if len(p) >= 3 and p[0] != "server":
                starts.setdefault((p[0], p[1]), []).append(float(p[2]) if p[2] else None)
    groups = {}
    for r in rows:
        groups.setdefault((r["mode"], r["server"]), []).append(r)
    order = [(m, s) for m in ("pinned", "unpinned") for s in ("geodns", "gdnsd", "nsd") if (m, s) in groups]

    def col(rs, k):
        return [float(r[k]) for r in rs if r.get(k) not in (None, "", "NA")]

    kq_gdnsd = {m: _med(col(groups.get((m, "gdnsd"), []), "kq_per_cpu_s")) for m in ("pinned", "unpinned")}
    # Each rep runs every server back to back, so the machine's speed, which drifts over
    # minutes here, is much the same for a rep's runs: the ratio within each rep cancels it.
    gdnsd_by_rep = {(r["mode"], r["rep"]): float(r["kq_per_cpu_s"]) for r in rows
                    if r["server"] == "gdnsd" and r.get("kq_per_cpu_s") not in (None, "", "NA")}

    def paired(m, rs):
        ratios = [float(r["kq_per_cpu_s"]) / gdnsd_by_rep[(m, r["rep"])] for r in rs
                  if r.get("kq_per_cpu_s") not in (None, "", "NA") and gdnsd_by_rep.get((m, r["rep"]))]
        if not ratios:
            return "—"
        return "%.2fx (%.2f-%.2f)" % (_med(ratios), min(ratios), max(ratios))

    out = ["| mode | server | reps | qps (median, min-max) | latency avg µs | latency max µs | lost | server CPU % "
           "| kq / server CPU-s (min-max) | ratio to gdnsd | ratio within each rep, median (min-max) "
           "| RSS after load MB | start-up to first answer ms | agreement with nearest site |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in order:
        rs = groups[(m, s)]
        qps, kq = col(rs, "qps"), col(rs, "kq_per_cpu_s")
        ratio = (_med(kq) / kq_gdnsd[m]) if kq and kq_gdnsd.get(m) else None
        st = _med(starts.get((s, m), []))
        out.append("| %s | %s | %d | %s (%s-%s) | %s | %s | %s | %s | %s (%s-%s) | %s | %s | %s | %s | %s |" % (
            m, s, len(rs), _fmt(_med(qps)), _fmt(min(qps or [0]) / 1000, 0) + "k", _fmt(max(qps or [0]) / 1000, 0) + "k",
            _fmt(_med(col(rs, "lat_avg_us")), 0), _fmt(_med(col(rs, "lat_max_us")), 0),
            _fmt(_med(col(rs, "lost")), 0), _fmt(_med(col(rs, "cpu_pct")), 0),
            _fmt(_med(kq), 1), _fmt(min(kq or [0]), 0), _fmt(max(kq or [0]), 0),
            ("%.2fx" % ratio) if ratio else "—", paired(m, rs), _fmt(_med(col(rs, "rss_mb")), 1),
            _fmt(st, 0), "N/A (static zone)" if s == "nsd" else agree.get(s, "—")))
    print("\n".join(out))


def main():
    argv = sys.argv[1:]
    if not argv:
        sys.exit(__doc__)
    cmd, rest = argv[0], argv[1:]
    opts = dict(zip(rest[0::2], rest[1::2]))
    if cmd == "free-port":
        cmd_free_port()
    elif cmd == "gen-queries":
        cmd_gen_queries(opts)
    elif cmd == "agreement":
        cmd_agreement(opts)
    elif cmd == "tree-cpu":
        cmd_tree_cpu(int(rest[0]))
    elif cmd == "tree-rss":
        cmd_tree_rss(int(rest[0]))
    elif cmd == "table":
        cmd_table(*rest[:4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
