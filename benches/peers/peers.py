#!/usr/bin/env python3
"""Helpers for benches/peers/run.sh (Python 3.9+, needs the `maxminddb` package).

  peers.py free-port
  peers.py gen-queries --db CITY.mmdb --v6-source FLAT-IPV6.mmdb --out queries.bin
                       --subnets subnets.txt --probe probe.bin --count N --seed S
                       [--ipv6-share 0.3] [--no-ecs-share 0.1] [--v6-56-share 0.5]
  peers.py agreement --db CITY.mmdb --server 127.0.0.1:PORT --subnets subnets.txt --limit N
                     [--detail per-subnet.tsv] [--name DB-NAME --unit SERVER]
  peers.py tree-cpu PID          # utime+stime ticks of PID and all its descendants
  peers.py tree-rss PID          # VmRSS (kB) of PID and all its descendants
  peers.py report --results results.tsv --startup startup.tsv --agreement agreement.jsonl
                  --dbinfo dbinfo.tsv --dbs "dbip geolite2" --units "geodns.plain gdnsd ..."
                  --loadgens "dnsperf geodns-load" --duration S
  peers.py country-sites --centroids geoip/country-centroids.csv --knot geo.conf --pdns lua.txt
                 # Knot's geoip config and PowerDNS's LUA records for app: each country to the
                 # site nearest its centroid (neither server ranks sites by distance)
  peers.py set-do --in queries.bin --out queries-do.bin   # the same queries with DO set

Sites and addresses are those of config/example.yaml (geo name `app.geo.example`).

Client classes of the query mix (the second column of the subnets file):
  v4     ECS with an IPv4 /24 that the City database places;
  v6/56  ECS with an IPv6 /56, v6/48 with an IPv6 /48: the prefix of a random address inside
         an IPv6 network of the City database's own IPv6 file (global unicast, special-purpose
         blocks left out), kept only if the converted database places the prefix;
  none   no ECS option (EDNS still on): the server sees the resolver's own address, 127.0.0.1
         on loopback, which no City database places.
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
CLASSES = ["v4", "v6/56", "v6/48"]  # the ECS client classes, in report order

# IPv4 ranges no ECS subnet is drawn from (special-purpose, private, multicast, reserved).
SPECIAL_V4 = [
    ("0.0.0.0", 8), ("10.0.0.0", 8), ("100.64.0.0", 10), ("127.0.0.0", 8), ("169.254.0.0", 16),
    ("172.16.0.0", 12), ("192.0.0.0", 24), ("192.0.2.0", 24), ("192.88.99.0", 24),
    ("192.168.0.0", 16), ("198.18.0.0", 15), ("198.51.100.0", 24), ("203.0.113.0", 24),
    ("224.0.0.0", 3),
]
# IPv6 clients come from global unicast (2000::/3) without these: the IETF protocol block
# (Teredo, ORCHID, benchmarking...), documentation, 6to4 (an IPv4 alias in the converted
# database) and the new documentation block.
SPECIAL_V6 = [("2001::", 23), ("2001:db8::", 32), ("2002::", 16), ("3fff::", 20)]


def _v4int(a):
    return struct.unpack("!I", socket.inet_aton(a))[0]


def _v6int(a):
    return int.from_bytes(socket.inet_pton(socket.AF_INET6, a), "big")


def _v6str(n):
    return socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big"))


def _mask6(p):
    return ((1 << 128) - 1) ^ ((1 << (128 - p)) - 1)


SPECIAL_MASKS = [(_v4int(a), (0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF) for a, p in SPECIAL_V4]
SPECIAL6_MASKS = [(_v6int(a), _mask6(p)) for a, p in SPECIAL_V6]
GLOBAL6 = (_v6int("2000::"), _mask6(3))


def is_special(n):
    return any((n & m) == a for a, m in SPECIAL_MASKS)


def is_special_v6(n):
    return (n & GLOBAL6[1]) != GLOBAL6[0] or any((n & m) == a for a, m in SPECIAL6_MASKS)


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


def ecs_of(cidr):
    """(family, source prefix, address bytes) of 'a.b.c.0/24' or '2001:db8:1::/48'."""
    addr, plen = cidr.split("/")
    if ":" in addr:
        return 2, int(plen), socket.inet_pton(socket.AF_INET6, addr)
    return 1, int(plen), socket.inet_aton(addr)


def build_query(name, qtype, ecs=None, qid=0):
    """A query with EDNS (UDP size 1232) and, unless ecs is None, an ECS option
    (ecs = (family, source prefix, address bytes), the address cut to the prefix's bytes)."""
    header = struct.pack("!HHHHHH", qid, 0x0000, 1, 0, 0, 1)
    question = encode_name(name) + struct.pack("!HH", qtype, 1)
    option = b""
    if ecs is not None:
        family, plen, addr = ecs
        body = struct.pack("!HBB", family, plen, 0) + addr[:(plen + 7) // 8]
        option = struct.pack("!HH", 8, len(body)) + body
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


def sample_v6_networks(path, k, rng):
    """A uniform sample (reservoir) of k of the IPv6 networks with coordinates in the flat
    IPv6 file `path`, global unicast only: (network as int, prefix length) pairs. Uniform over
    networks, not over addresses: by addresses a handful of /19-/29 blocks would be nearly
    every client, where real resolvers serve many networks."""
    import maxminddb

    reader = maxminddb.open_database(path)
    sample, seen = [], 0
    for net, rec in reader:
        if net.version != 6 or location(rec) is None:
            continue
        n = int(net.network_address)
        if is_special_v6(n):
            continue
        seen += 1
        if len(sample) < k:
            sample.append((n, net.prefixlen))
        else:
            j = rng.randrange(seen)
            if j < k:
                sample[j] = (n, net.prefixlen)
    return sample, seen


def cmd_gen_queries(args):
    import maxminddb

    db = maxminddb.open_database(args["--db"])
    count, rng = int(args["--count"]), random.Random(int(args["--seed"]))
    v6_share = float(args.get("--ipv6-share", 0.3))
    none_share = float(args.get("--no-ecs-share", 0.1))
    s56 = float(args.get("--v6-56-share", 0.5))
    if v6_share < 0 or none_share < 0 or v6_share + none_share > 1 or not 0 <= s56 <= 1:
        sys.exit("gen-queries: need 0 <= ipv6-share, no-ecs-share; their sum <= 1; 0 <= v6-56-share <= 1")
    pool, pool_seen = [], 0
    if v6_share > 0:
        # Its own seeded generator, so the IPv4 draws do not depend on the IPv6 file's size.
        pool, pool_seen = sample_v6_networks(args["--v6-source"], max(50000, 2 * count), random.Random(rng.getrandbits(64)))
        if not pool:
            sys.exit("gen-queries: no IPv6 network with coordinates in " + args["--v6-source"])
    used4, used6 = set(), set()
    subnets, out = [], bytearray()
    kinds = {"app": 0, "nx": 0, "soa": 0}
    classes = {c: 0 for c in CLASSES + ["none"]}
    misses = 0

    def draw_v4():
        nonlocal misses
        while True:
            n = rng.getrandbits(24) << 8
            if n in used4 or is_special(n):
                continue
            addr = socket.inet_ntoa(struct.pack("!I", n))
            if location(db.get(addr)) is None:
                continue  # a routable subnet is one the City database places
            used4.add(n)
            return "%s/24" % addr

    def draw_v6(p):
        nonlocal misses
        for _ in range(10000):
            n, plen = pool[rng.randrange(len(pool))]
            host = rng.getrandbits(128 - plen) if plen < 128 else 0
            base = (n | host) & _mask6(p)
            if (p, base) in used6 or is_special_v6(base):
                continue
            addr = _v6str(base)
            # The servers look up the ECS address (its bits past the prefix zero): the prefix
            # must be placed too (a /48 around a small network may not be).
            if location(db.get(addr)) is None:
                misses += 1
                continue
            used6.add((p, base))
            return "%s/%d" % (addr, p)
        sys.exit("gen-queries: could not draw a new placed IPv6 /%d" % p)

    probe = None
    for _ in range(count):
        r = rng.random()
        if r < 0.85:
            name, qtype, kind = "app." + ZONE, 1, "app"
        elif r < 0.95:
            name, qtype, kind = "nx%08x.%s" % (rng.getrandbits(32), ZONE), 1, "nx"
        else:
            name, qtype, kind = ZONE, 6, "soa"
        c = rng.random()
        if c < none_share:
            cls, cidr = "none", "-"
        elif c < none_share + v6_share:
            cls = "v6/56" if rng.random() < s56 else "v6/48"
            cidr = draw_v6(56 if cls == "v6/56" else 48)
        else:
            cls, cidr = "v4", draw_v4()
        kinds[kind] += 1
        classes[cls] += 1
        q = build_query(name, qtype, None if cls == "none" else ecs_of(cidr))
        out += struct.pack("!H", len(q)) + q
        subnets.append((kind, cls, cidr))
        if probe is None and kind == "app" and cls == "v4":
            probe = q
    if probe is None:  # no IPv4 client in the mix: probe with a placed /24 anyway
        probe = build_query("app." + ZONE, 1, ecs_of(draw_v4()))
    with open(args["--out"], "wb") as f:
        f.write(out)
    with open(args["--subnets"], "w") as f:
        for kind, cls, cidr in subnets:
            f.write("%s %s %s\n" % (kind, cls, cidr))
    with open(args["--probe"], "wb") as f:
        f.write(struct.pack("!H", len(probe)) + probe)
    print("%d queries (%s; %s), %d distinct IPv4 /24, %d distinct IPv6 prefixes "
          "(sampled from %d of %d IPv6 networks; %d unplaced prefixes redrawn), %d bytes" % (
              count, ", ".join("%s %d" % kv for kv in kinds.items()),
              ", ".join("%s %d" % kv for kv in classes.items()), len(used4), len(used6),
              len(pool), pool_seen, misses, len(out)))


def _ask(sock, q, qid):
    sock.send(q)
    for _ in range(3):
        try:
            m = sock.recv(4096)
        except socket.timeout:
            return None
        if m[:2] == struct.pack("!H", qid):
            return m
    return None


def cmd_agreement(args):
    import maxminddb

    db = maxminddb.open_database(args["--db"])
    host, port = args["--server"].rsplit(":", 1)
    limit = int(args["--limit"])
    by_addr = {s[3]: s[0] for s in SITES}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, int(port)))
    sock.settimeout(1.0)
    stats = {c: {"asked": 0, "agree": 0, "unanswered": 0, "scopes": [], "wrong": []} for c in CLASSES}
    detail = open(args["--detail"], "w") if args.get("--detail") else None
    n = 0
    with open(args["--subnets"]) as f:
        for line in f:
            kind, cls, cidr = line.split()
            if kind != "app" or cls not in stats or stats[cls]["asked"] >= limit:
                continue
            st = stats[cls]
            loc = location(db.get(cidr.split("/")[0]))
            if loc is None:
                continue
            want = nearest_site(*loc)
            n += 1
            qid = (n * 7 + 1) & 0xFFFF
            msg = _ask(sock, build_query("app." + ZONE, 1, ecs_of(cidr), qid), qid)
            st["asked"] += 1
            if msg is None:
                st["unanswered"] += 1
                if detail:
                    detail.write("%s\t%s\t%s\t-\t-\n" % (cls, cidr, want))
                continue
            _, addrs, scope = parse_answer(msg)
            got = by_addr.get(addrs[0]) if addrs else None
            if scope is not None:
                st["scopes"].append(scope)
            if got == want:
                st["agree"] += 1
            elif len(st["wrong"]) < 5:
                st["wrong"].append("%s: want %s got %s" % (cidr, want, got))
            if detail:
                detail.write("%s\t%s\t%s\t%s\t%s\n" % (cls, cidr, want, got, "-" if scope is None else scope))
    if detail:
        detail.close()
    # A query without ECS: the server places the resolver's own address (127.0.0.1: nowhere).
    qid = 0x7E57
    msg = _ask(sock, build_query("app." + ZONE, 1, None, qid), qid)
    if msg is None:
        no_ecs = {"answered": False}
    else:
        rcode, addrs, scope = parse_answer(msg)
        no_ecs = {"answered": True, "rcode": rcode, "site": by_addr.get(addrs[0]) if addrs else None,
                  "answers": len(addrs), "ecs_in_answer": scope is not None}
    # --name, --unit and --detail are carried into the JSON line for `report`.
    out = {"db": args.get("--name"), "unit": args.get("--unit"), "detail": args.get("--detail"),
           "classes": {}, "no_ecs": no_ecs}
    for c, st in stats.items():
        if not st["asked"]:
            continue
        out["classes"][c] = {
            "asked": st["asked"], "agree": st["agree"], "unanswered": st["unanswered"],
            "pct": round(100.0 * st["agree"] / st["asked"], 2),
            "scope_median": statistics.median(st["scopes"]) if st["scopes"] else None,
            "scope_min": min(st["scopes"]) if st["scopes"] else None,
            "scope_max": max(st["scopes"]) if st["scopes"] else None,
            "examples_of_disagreement": st["wrong"],
        }
    print(json.dumps(out))


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


# ---------------------------------------------------------------------------------------------
# The report (markdown), from the rows run.sh appends.

def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, nd=0):
    if x is None:
        return "—"
    return ("{:,.%df}" % nd).format(x)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _read_tsv(path):
    if not os.path.exists(path):
        return []
    lines = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    if not lines:
        return []
    head = lines[0]
    return [dict(zip(head, l)) for l in lines[1:]]


def unit_label(u):
    if u in PEER_LABELS:
        return PEER_LABELS[u]
    if u == "geodns.plain":
        return "geodns"
    if u.startswith("geodns."):
        v = u.split(".", 1)[1]
        return "geodns, max_answers: 1" if v == "max1" else "geodns, " + v
    return u


def gen_title(gen, duration):
    if gen == "dnsperf":
        return "dnsperf -B -l %s -c 8 -T 1 -q 200 -t 2" % duration
    if gen == "geodns-load":
        return "geodns-load -d %s -c 4 -b 32 -w 32 (sendmmsg/recvmmsg, 128 in flight)" % duration
    return gen


METRICS = [  # key, label
    ("kq_per_cpu_s", "kq / server CPU-s"),
    ("qps", "qps"),
    ("lat_avg_us", "latency avg (lower is better)"),
]


def cmd_report(o):
    rows = _read_tsv(o["--results"])
    for r in rows:
        done, cpu = _num(r.get("completed")), _num(r.get("cpu_s"))
        r["us_per_q"] = cpu * 1e6 / done if done and cpu is not None else None
    starts = _read_tsv(o["--startup"])
    agree = {}
    if os.path.exists(o["--agreement"]):
        for l in open(o["--agreement"]):
            if l.strip():
                d = json.loads(l)
                agree[(d["db"], d["unit"])] = d
    dbinfo = {d["db"]: d for d in _read_tsv(o["--dbinfo"])}
    dbs = o.get("--dbs", "").split() or sorted({r["db"] for r in rows})
    units = o.get("--units", "").split() or sorted({r["unit"] for r in rows})
    gens = o.get("--loadgens", "").split() or sorted({r["loadgen"] for r in rows})
    duration = o.get("--duration", "?")
    modes = [m for m in ("pinned", "unpinned") if any(r["mode"] == m for r in rows)]

    def sel(db, mode, unit, gen):
        return [r for r in rows if r["db"] == db and r["mode"] == mode and r["unit"] == unit and r["loadgen"] == gen]

    def col(rs, k):
        return [v for v in (_num(r.get(k)) if k != "us_per_q" else r.get(k) for r in rs) if v is not None]

    def start_med(db, mode, unit, k="startup_ms"):
        return _med([_num(s.get(k)) for s in starts if s["db"] == db and s["mode"] == mode and s["unit"] == unit])

    def ratios(db, mode, unit, gen, k):
        """(ratio of medians, [per-rep ratios in rep order]) of unit against gdnsd."""
        rs, gs = sel(db, mode, unit, gen), sel(db, mode, "gdnsd", gen)
        a, b = _med(col(rs, k)), _med(col(gs, k))
        rom = a / b if a is not None and b else None
        g_by_rep = {r["rep"]: _num(r.get(k)) for r in gs}
        per = []
        for r in sorted(rs, key=lambda r: int(r["rep"])):
            x, y = _num(r.get(k)), g_by_rep.get(r["rep"])
            if x is not None and y:
                per.append(x / y)
        return rom, per

    def fmt_per(per):
        if not per:
            return "—"
        return "%.2fx (%.2f-%.2f)" % (_med(per), min(per), max(per))

    def db_title(db):
        d = dbinfo.get(db, {})
        return "%s %s" % (d.get("label", db), d.get("version", ""))

    out = []
    geo_units = [u for u in units if u.startswith("geodns.")]
    if "gdnsd" in units and geo_units:
        out += ["## Summary: geodns against gdnsd, queries per server CPU-second", "",
                "| database | mode | geodns | load generator | reps | ratio of medians | median of per-rep ratios (min-max) "
                "| gdnsd: server CPU µs per query | RSS after load MB, geodns / gdnsd | first answer ms, geodns / gdnsd |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for db in dbs:
            for mode in modes:
                for u in geo_units:
                    for gen in gens:
                        rs = sel(db, mode, u, gen)
                        if not rs:
                            continue
                        rom, per = ratios(db, mode, u, gen, "kq_per_cpu_s")
                        gs = sel(db, mode, "gdnsd", gen)
                        out.append("| %s | %s | %s | %s | %d | %s | %s | %s | %s / %s | %s / %s |" % (
                            db, mode, unit_label(u), gen, len(rs),
                            "**%.2fx**" % rom if rom else "—", fmt_per(per),
                            _fmt(_med(col(gs, "us_per_q")), 2),
                            _fmt(_med(col(rs, "rss_mb")), 1), _fmt(_med(col(gs, "rss_mb")), 1),
                            _fmt(start_med(db, mode, u), 0), _fmt(start_med(db, mode, "gdnsd"), 0)))
        out.append("")
    def as_wide(db, u, c):
        """Share of the class's prefixes answered with a scope no longer than gdnsd's."""
        if u == "gdnsd" or (db, "gdnsd") not in agree or (db, u) not in agree:
            return None
        mine, theirs = _load_scopes(agree[(db, u)].get("detail")), _load_scopes(agree[(db, "gdnsd")].get("detail"))
        both = [(mine[k], theirs[k]) for k in mine if k[0] == c and k in theirs]
        if not both:
            return None
        return 100.0 * sum(1 for x, y in both if x <= y) / len(both), len(both)

    if agree:
        out += ["## Summary: agreement with the great-circle nearest site, and ECS scope", "",
                "Agree: share of the prefixes answered with the nearest site. Scope: median ECS scope "
                "(smaller is wider). As wide: share of the prefixes answered with a scope no longer than gdnsd's.", "",
                "| database | server | v4 agree | v4 scope | " +
                " | ".join("%s agree | %s scope | %s as wide as gdnsd's" % (c, c, c) for c in CLASSES[1:]) + " | no ECS: site |",
                "|---|---|---|---|" + "---|---|---|" * (len(CLASSES) - 1) + "---|"]
        for db in dbs:
            for u in units:
                d = agree.get((db, u))
                if not d:
                    continue
                cells = []
                for c in CLASSES:
                    s = d["classes"].get(c)
                    cells += ["%.2f%%" % s["pct"], "/%s" % _fmt(s["scope_median"], 0)] if s else ["—", "—"]
                    if c != "v4":
                        w = as_wide(db, u, c)
                        cells.append("%.2f%%" % w[0] if w else "—")
                ne = d.get("no_ecs", {})
                out.append("| %s | %s | %s | %s |" % (db, unit_label(u), " | ".join(cells),
                                                        ne.get("site") or ("no answer" if not ne.get("answered") else "no address")))
        out.append("")

    for db in dbs:
        d = dbinfo.get(db, {})
        out += ["## %s" % db_title(db), ""]
        if d:
            out += ["%s; licence: %s. Converted file: %s." % (d.get("label", db), d.get("licence", "?"), d.get("networks", "?")), ""]
        for gen in gens:
            out += ["### %s" % gen_title(gen, duration), "",
                    "| mode | server | reps | qps (median, min-max) | latency avg µs | latency max µs | lost | server CPU % "
                    "| kq / server CPU-s (min-max) | server CPU µs per query | RSS after load MB "
                    "| start-up to first answer ms | geodns rankings built ms |",
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for mode in modes:
                for u in units:
                    rs = sel(db, mode, u, gen)
                    if not rs:
                        continue
                    qps, kq = col(rs, "qps"), col(rs, "kq_per_cpu_s")
                    out.append("| %s | %s | %d | %s (%sk-%sk) | %s | %s | %s | %s | %s (%s-%s) | %s | %s | %s | %s |" % (
                        mode, unit_label(u), len(rs), _fmt(_med(qps)), _fmt(min(qps or [0]) / 1000), _fmt(max(qps or [0]) / 1000),
                        _fmt(_med(col(rs, "lat_avg_us"))), _fmt(_med(col(rs, "lat_max_us"))),
                        _fmt(_med(col(rs, "lost"))), _fmt(_med(col(rs, "cpu_pct"))),
                        _fmt(_med(kq), 1), _fmt(min(kq or [0])), _fmt(max(kq or [0])),
                        _fmt(_med(col(rs, "us_per_q")), 2), _fmt(_med(col(rs, "rss_mb")), 1),
                        _fmt(start_med(db, mode, u)),
                        _fmt(start_med(db, mode, u, "rank_ms")) if u.startswith("geodns") else "—"))
            out.append("")
            if not any(sel(db, m, "gdnsd", gen) for m in modes):
                continue
            out += ["Against gdnsd (geodns or NSD over gdnsd; within each rep the two ran back to back):", "",
                    "| mode | server | metric | ratio of medians | median of per-rep ratios (min-max) | per-rep ratios, rep 1, 2, ... |",
                    "|---|---|---|---|---|---|"]
            for mode in modes:
                for u in units:
                    if u == "gdnsd" or not sel(db, mode, u, gen):
                        continue
                    for k, label in METRICS:
                        rom, per = ratios(db, mode, u, gen, k)
                        out.append("| %s | %s | %s | %s | %s | %s |" % (
                            mode, unit_label(u), label, "%.2fx" % rom if rom else "—", fmt_per(per),
                            ", ".join("%.2f" % x for x in per) or "—"))
            out.append("")
        ag = [(u, agree[(db, u)]) for u in units if (db, u) in agree]
        if not ag:
            continue
        out += ["### Agreement with the great-circle nearest site, and ECS scope", "",
                "| server | clients | subnets asked | agree with nearest site | unanswered | scope median (min-max) "
                "| scope as wide as gdnsd's or wider |",
                "|---|---|---|---|---|---|---|"]
        for u, a in ag:
            for c in CLASSES:
                s = a["classes"].get(c)
                if not s:
                    continue
                w = as_wide(db, u, c)
                wide = "%.2f%% of %d" % w if w else "—"
                out.append("| %s | %s | %d | %.2f%% | %d | /%s (/%s-/%s) | %s |" % (
                    unit_label(u), c, s["asked"], s["pct"], s["unanswered"], _fmt(s["scope_median"]),
                    _fmt(s["scope_min"]), _fmt(s["scope_max"]), wide))
            ne = a.get("no_ecs", {})
            out.append("| %s | no ECS (from 127.0.0.1) | 1 | answered %s | %d | %s | — |" % (
                unit_label(u), ne.get("site") or "—", 0 if ne.get("answered") else 1,
                "ECS in the answer" if ne.get("ecs_in_answer") else "no ECS in the answer"))
        out.append("")
        for u, a in ag:
            for c in CLASSES:
                w = (a["classes"].get(c) or {}).get("examples_of_disagreement")
                if w:
                    out.append("- %s, %s, disagreements: %s" % (unit_label(u), c, "; ".join(w)))
        out.append("")
    print("\n".join(out))


def _load_scopes(path):
    """{(class, cidr): scope} from an agreement --detail file."""
    res = {}
    if not path or not os.path.exists(path):
        return res
    for l in open(path):
        p = l.rstrip("\n").split("\t")
        if len(p) >= 5 and p[4] not in ("-", ""):
            res[(p[0], p[1])] = int(p[4])
    return res


PEER_LABELS = {"knot": "Knot (geoip, by country)", "pdns": "PowerDNS (LUA, by country)"}
SITE_V6 = {"london": "2001:db8::1", "frankfurt": "2001:db8::2", "seattle": "2001:db8::3",
           "singapore": "2001:db8::4"}


def _haversine(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(a)))


def cmd_country_sites(o):
    """Knot's geoip module and PowerDNS's LUA records match countries, not distances: map each
    country to the site nearest its centroid. Clients the database does not place (and, for
    Knot, countries not listed) get the first site, London, as from geodns and gdnsd."""
    import csv
    nearest = {}
    with open(o["--centroids"]) as f:
        for row in csv.DictReader(f):
            lat, lon = float(row["latitude"]), float(row["longitude"])
            nearest[row["iso_code"]] = min(SITES, key=lambda s: _haversine(lat, lon, s[1], s[2]))
    with open(o["--knot"], "w") as f:
        f.write("app.%s:\n" % ZONE.rstrip("."))
        for cc in sorted(nearest):
            name, _, _, v4 = nearest[cc]
            f.write('  - geo: "%s"\n    A: %s\n    AAAA: %s\n' % (cc, v4, SITE_V6[name]))
    # One Lua table, country code (lower case, as countryCode() gives it) -> site index; London
    # (index 1) is the default, so only the other sites' countries are listed.
    idx = {s[0]: i + 1 for i, s in enumerate(SITES)}
    table = ",".join("['%s']=%d" % (cc.lower(), idx[nearest[cc][0]])
                     for cc in sorted(nearest) if nearest[cc][0] != SITES[0][0])
    with open(o["--pdns"], "w") as f:
        for rtype, addrs in (("A", [s[3] for s in SITES]), ("AAAA", [SITE_V6[s[0]] for s in SITES])):
            f.write('app 60 IN LUA %s ";local m={%s} return ({%s})[m[countryCode()] or 1]"\n' % (
                rtype, table, ",".join("'%s'" % a for a in addrs)))
    print("%d countries: %s" % (len(nearest), ", ".join(
        "%s %d" % (s[0], sum(1 for v in nearest.values() if v[0] == s[0])) for s in SITES)))


def cmd_set_do(o):
    """Copy a -B query file (2-byte length, message) with the DO bit set in every OPT record."""
    data = open(o["--in"], "rb").read()
    out, i, n = bytearray(), 0, 0
    while i < len(data):
        ln = struct.unpack("!H", data[i:i + 2])[0]
        msg = bytearray(data[i + 2:i + 2 + ln])
        i += 2 + ln
        qd, an, ns, ar = struct.unpack("!4H", msg[4:12])
        pos = 12
        for _ in range(qd):
            while msg[pos]:
                pos += msg[pos] + 1
            pos += 5
        for k in range(an + ns + ar):
            while msg[pos] and msg[pos] < 0xC0:
                pos += msg[pos] + 1
            pos += 2 if msg[pos] >= 0xC0 else 1
            rtype = struct.unpack("!H", msg[pos:pos + 2])[0]
            if rtype == 41:
                msg[pos + 6] |= 0x80  # TTL = ext-rcode, version, flags: DO is the top flag bit
                n += 1
            rdlen = struct.unpack("!H", msg[pos + 8:pos + 10])[0]
            pos += 10 + rdlen
        out += struct.pack("!H", len(msg)) + msg
    open(o["--out"], "wb").write(out)
    print("DO set in %d queries" % n)


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
    elif cmd == "report":
        cmd_report(opts)
    elif cmd == "country-sites":
        cmd_country_sites(opts)
    elif cmd == "set-do":
        cmd_set_do(opts)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
