#!/usr/bin/env python3
"""Helpers of benches/reload/run.sh (Python standard library only).

free-port                 a loopback port free for both UDP and TCP
queries OUT N SEED        N varied-ECS queries in the -B format (2-byte length, DNS message)
configs DIR PORT ADMIN DB  config-a.yaml, config-b.yaml and config-bad.yaml in DIR
expect OUT REC...         join --record files (one column each) into an --expect file
crosscheck QFILE REC OUT N SEED  routing test cases (geodns check --tests) for N recorded answers
metric URL NAME [LABEL]   the sum of a Prometheus metric's samples (those whose labels contain LABEL)
report TIMELINE LOG WRITES  reloads seen in the server's log, and the answers checked against
                          them: one config per epoch, and the last good one after a rejection
"""

import bisect
import datetime
import ipaddress
import json
import random
import re
import socket
import struct
import sys
import urllib.request

ZONE = "geo.example."

# Sites of the two configs: A is config/example.yaml's four sites; B shares two of them
# (with other addresses) and adds four, so most clients get another site and address.
SITES_A = {
    "london": (51.51, -0.13),
    "frankfurt": (50.11, 8.68),
    "seattle": (47.61, -122.33),
    "singapore": (1.35, 103.82),
}
SITES_B = {
    "london": (51.51, -0.13),
    "frankfurt": (50.11, 8.68),
    "newyork": (40.71, -74.01),
    "saopaulo": (-23.55, -46.63),
    "tokyo": (35.68, 139.69),
    "sydney": (-33.87, 151.21),
}


def free_port():
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        return port
    sys.exit("no free port")


def name_wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype, ecs):
    """A query with EDNS (UDP 1232) and, when ecs = (network), a Client Subnet option."""
    head = struct.pack(">HHHHHH", 0, 0x0000, 1, 0, 0, 1)
    q = name_wire(name) + struct.pack(">HH", qtype, 1)
    opts = b""
    if ecs is not None:
        fam = 1 if ecs.version == 4 else 2
        nbytes = (ecs.prefixlen + 7) // 8
        addr = ecs.network_address.packed[:nbytes]
        body = struct.pack(">HBB", fam, ecs.prefixlen, 0) + addr
        opts = struct.pack(">HH", 8, len(body)) + body
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(opts)) + opts
    return head + q + opt


V4_SKIP = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/3")]
# IPv6: the blocks the five registries allocate from, where the database places most networks.
V6_BLOCKS = [ipaddress.ip_network(n) for n in (
    "2001:200::/23", "2001:400::/23", "2001:600::/23", "2001:1200::/23", "2001:4200::/23",
    "2400::/12", "2600::/12", "2800::/12", "2a00::/12", "2c00::/12")]


def random_v4(rng, plen):
    while True:
        a = ipaddress.IPv4Address(rng.getrandbits(32))
        if not any(a in n for n in V4_SKIP):
            return ipaddress.ip_network(f"{a}/{plen}", strict=False)


def random_v6(rng, plen):
    block = rng.choice(V6_BLOCKS)
    a = int(block.network_address) | rng.getrandbits(128 - block.prefixlen)
    return ipaddress.ip_network(f"{ipaddress.IPv6Address(a)}/{plen}", strict=False)


def gen_queries(out, n, seed):
    """Names: app A/AAAA (every address of the nearest site), web A (max_answers 2), static A,
    an NXDOMAIN name. Clients: IPv4 ECS /24 (some /20), IPv6 ECS /56 and /48, /28s of the
    configs' client network 10.42.0.0/16, and no ECS (the server sees 127.0.0.1). Every ECS prefix
    different."""
    rng = random.Random(seed)
    seen = set()
    kinds = {"v4": 0, "v6": 0, "client_networks": 0, "no_ecs": 0}
    with open(out, "wb") as f:
        for _ in range(n):
            r = rng.random()
            if r < 0.55:
                kind = "v4"
            elif r < 0.85:
                kind = "v6"
            elif r < 0.92:
                kind = "client_networks"
            else:
                kind = "no_ecs"
            while True:
                if kind == "v4":
                    ecs = random_v4(rng, 24 if rng.random() < 0.9 else 20)
                elif kind == "v6":
                    ecs = random_v6(rng, 56 if rng.random() < 0.5 else 48)
                elif kind == "client_networks":
                    ecs = ipaddress.ip_network(f"10.42.{rng.randrange(256)}.{rng.randrange(16) * 16}/28")
                else:
                    ecs = None
                if ecs is None or ecs not in seen:
                    break
            if ecs is not None:
                seen.add(ecs)
            kinds[kind] += 1
            r = rng.random()
            if r < 0.55:
                name, qtype = "app." + ZONE, 1
            elif r < 0.75:
                name, qtype = "app." + ZONE, 28
            elif r < 0.9:
                name, qtype = "web." + ZONE, 1
            elif r < 0.95:
                name, qtype = "static." + ZONE, 1
            else:
                name, qtype = f"nx{rng.randrange(10**6)}." + ZONE, 1
            msg = query(name, qtype, ecs)
            f.write(struct.pack(">H", len(msg)) + msg)
    print(json.dumps({"queries": n, "ecs_prefixes": len(seen), **kinds}))


def config_text(port, admin, db, variant):
    b = variant in ("b", "bad")
    sites = SITES_B if b else SITES_A
    net = 100 if b else 2
    lines = [
        "# Written by benches/reload/run.sh: config " + variant.upper(),
        "server:",
        f'  dns_listen: ["127.0.0.1:{port}"]',
        f'  admin_listen: "127.0.0.1:{admin}"',
        "  # RRL would limit this one loopback client at 20,000 qps; it is not what is measured.",
        "  rrl: { enabled: false }",
        "geoip:",
        f"  database: {db}",
        "sites:",
    ]
    for s, (lat, lon) in sites.items():
        lines.append(f"  {s}: {{ location: [{lat}, {lon}] }}")
    lines += [
        "client_networks:",
        f"  - {{ cidr: 10.42.0.0/16, site: {'tokyo' if b else 'london'} }}",
        "zones:",
        f"  {ZONE}:",
        "    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1,",
        "           refresh: 7200, retry: 1800, expire: 1209600, minimum: 300 }",
        "    ns: [ns1.geo.example.]",
        "    ttl: 300",
        "    records:",
        "      ns1: { A: [127.0.0.1] }",
        f"      static: {{ A: [192.0.2.{153 if b else 53}] }}",
        "    geo:",
        "      app:",
        f"        ttl: {30 if b else 60}",
        "        sites:",
    ]
    prefix = "198.51.100" if b else "192.0.2"
    v6 = "2001:db8:b::" if b else "2001:db8:a::"
    for i, s in enumerate(sites, start=1):
        lines.append(f'          {s}: [{prefix}.{i}, "{v6}{i}", {prefix}.{i + 100}]')
    if variant == "bad":
        # Invalid: a site that the config does not define.
        lines.append('          atlantis: [198.51.100.99]')
    lines += [
        "      web:",
        "        ttl: 20",
        "        max_answers: 2",
        "        sites:",
    ]
    for i, s in enumerate(sites, start=1):
        lines.append(f"          {s}: [{prefix}.{i + 50}]")
    return "\n".join(lines) + "\n"


def configs(d, port, admin, db):
    for v in ("a", "b", "bad"):
        with open(f"{d}/config-{v}.yaml", "w") as f:
            f.write(config_text(port, admin, db, v))


def expect(out, recs):
    cols = []
    for r in recs:
        with open(r) as f:
            cols.append(f.read().splitlines())
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        sys.exit("record files of different lengths")
    lost = sum(1 for c in cols for a in c if a == "LOST")
    if lost:
        sys.exit(f"{lost} queries unanswered while recording the expected answers")
    differ = 0
    with open(out, "w") as f:
        for row in zip(*cols):
            differ += len(set(row)) > 1
            f.write("\t".join(row) + "\n")
    print(json.dumps({"queries": n, "answers_differ": differ}))


def parse_query(msg):
    """(name, qtype, client) of a query built by `query`: client is the ECS prefix, or
    127.0.0.1 (the load generator's address) without ECS."""
    at, labels = 12, []
    while msg[at]:
        labels.append(msg[at + 1:at + 1 + msg[at]].decode())
        at += 1 + msg[at]
    qtype = struct.unpack(">H", msg[at + 1:at + 3])[0]
    at += 5 + 11  # the question's type and class; the OPT record up to its options
    client = "127.0.0.1"
    if at + 4 <= len(msg):
        fam, plen = struct.unpack(">HB", msg[at + 4:at + 7])
        raw = msg[at + 8:]
        size = 4 if fam == 1 else 16
        addr = ipaddress.ip_address(raw + b"\0" * (size - len(raw)))
        client = f"{addr}/{plen}"
    return ".".join(labels) + ".", qtype, client


def crosscheck(qfile, record, out, n, seed):
    """Routing test cases (`geodns check --tests`) for a sample of N queries, expecting what
    the server answered while recording: the same answers from `geodns check`'s own path
    (load, validate, build, resolve; no sockets) are an independent look at the recording."""
    data = open(qfile, "rb").read()
    msgs, at = [], 0
    while at < len(data):
        ln = struct.unpack(">H", data[at:at + 2])[0]
        msgs.append(data[at + 2:at + 2 + ln])
        at += 2 + ln
    answers = open(record).read().splitlines()
    rng = random.Random(int(seed))
    cases = []
    for i in sorted(rng.sample(range(len(msgs)), int(n))):
        name, qtype, client = parse_query(msgs[i])
        m = re.match(r"rcode=(\d+).* an=\[(.*)\] ns=\[.*\] ecs=(\S+)$", answers[i])
        rcode, an, ecs = int(m.group(1)), m.group(2), m.group(3)
        expect = {"rcode": {0: "NOERROR", 3: "NXDOMAIN"}.get(rcode, str(rcode))}
        records = [r.split(" ") for r in an.split(",")] if an else []
        if records:
            expect["addresses"] = sorted(r[3] for r in records)
            expect["ttl"] = int(records[0][1])
        if ecs != "-":
            expect["scope"] = int(ecs.split("/")[1])
        cases.append({
            "name": f"query {i}",
            "client": client,
            "query": name,
            "type": {1: "A", 28: "AAAA"}[qtype],
            "expect": expect,
        })
    with open(out, "w") as f:
        f.write("# Written by benches/reload/run.sh from what the server answered.\ncases:\n")
        for c in cases:
            f.write("  - " + json.dumps(c) + "\n")



def metric(url, name, label=""):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    print(int(total) if total == int(total) else total)


TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_ns(line):
    m = TS.match(ANSI.sub("", line))
    if not m:
        return None
    t = m.group(1)
    whole, _, frac = t.partition(".")
    dt = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 10**9 + int((frac + "000000000")[:9])


def report(timeline, log, writes):
    """Reload events from the server's log (run with geodns::app::builder at debug, which logs
    each table it publishes), and the answers checked against them.

    An epoch is the time one config serves: from the first table published after a
    `config reloaded` line to the next `config reloaded` line (the next config's table is
    built, and published, only after that line). Every answer whose query was sent after an
    epoch began and that was received before it ended was made by that epoch's tables, so it
    must be of the config the epoch's reload read: the one the script had last renamed over
    config.yaml before the reload read it (in the 50 ms before its log line; when a rename may
    have fallen in those 50 ms, the epoch is judged by the majority of its answers). Rejected reloads (`reload rejected`) fall inside
    an epoch and must change nothing: the answers after a rejection must be of that same
    config, the last good one. Answers within 1 ms of an epoch's ends are left out (the load
    generator's and the server's clock readings are not one)."""
    events = []  # (ns, kind, error), kind in ok, failed, published
    hups = 0
    lines = [ANSI.sub("", line.rstrip("\n")) for line in open(log, errors="replace")]
    for k, plain in enumerate(lines):
        if 'signal="SIGHUP"' in plain:
            hups += 1
        elif "config reloaded" in plain:
            events.append((log_ns(plain), "ok", None))
        elif "reload rejected" in plain:
            m = re.search(r"error=(.*)$", plain)
            error = m.group(1).strip() if m else plain.strip()
            # A multi-line reason continues on the lines without a timestamp.
            for more in lines[k + 1:k + 5]:
                if log_ns(more) is not None:
                    break
                error += " " + more.strip()
            events.append((log_ns(plain), "failed", error))
        elif "routing table published" in plain:
            events.append((log_ns(plain), "published", None))
    ok = sum(1 for e in events if e[1] == "ok")
    failed = [e for e in events if e[1] == "failed"]
    written = {}
    writes_at = []  # (from ns, to ns, config): a config renamed over config.yaml in between
    for line in open(writes):
        t0, t1, what = line.split()
        written[what] = written.get(what, 0) + 1
        writes_at.append((int(t0) * 1000, int(t1) * 1000, what))
    # Epochs: [first publish after an ok (or the start), next ok), with the rejections inside.
    epochs = []  # [start, end, first rejection or None, the ok reload's time or None]
    start, loaded_at = 0, None
    waiting_publish = False
    for t, kind, _ in events:
        if kind == "ok":
            if not waiting_publish:
                epochs.append([start, t, None, loaded_at])
            waiting_publish, loaded_at = True, t
        elif kind == "published" and waiting_publish:
            start, waiting_publish = t, False
    if not waiting_publish:
        epochs.append([start, 1 << 62, None, loaded_at])
    for t, kind, _ in events:
        if kind == "failed":
            for e in epochs:
                if e[0] <= t < e[1] and e[2] is None:
                    e[2] = t
    # The config each epoch serves: the one config.yaml held when its reload read it, just
    # before its `config reloaded` line (the server starts with A). A rename in the 50 ms
    # before that line leaves it open: those epochs are judged by the majority of their answers.
    read_within = 50 * 10**6
    expected = []
    for e in epochs:
        if e[3] is None:
            expected.append("a")
            continue
        read_from = e[3] - read_within
        if any(w[0] <= e[3] and w[1] >= read_from for w in writes_at):
            expected.append(None)  # a rename may have come before or after the read
        else:
            before = [w for w in writes_at if w[1] < read_from]
            expected.append(before[-1][2] if before else "a")
    starts = [e[0] for e in epochs]
    margin = 10**6
    # Per epoch: answers only A's (mask 1) and only B's (mask 2), before and after its first
    # rejection.
    counts = [[0, 0, 0, 0] for _ in epochs]  # A before, B before, A after, B after
    for line in open(timeline):
        s, r, mask = (int(x) for x in line.split())
        if mask not in (1, 2):
            continue  # wrong (counted by geodns-load) or the same under both configs
        i = bisect.bisect_right(starts, s - margin) - 1
        if i < 0 or r + margin > epochs[i][1]:
            continue
        after = epochs[i][2] is not None and s >= epochs[i][2]
        counts[i][(2 if after else 0) + (mask - 1)] += 1
    other_config = invalid_answers = not_last_good = by_majority = 0
    for e, want, (ab, bb, aa, ba) in zip(epochs, expected, counts):
        if want is None:
            by_majority += 1
            want = "a" if ab + aa >= bb + ba else "b"
        good = 0 if want == "a" else 1
        other_config += (ab + aa, bb + ba)[1 - good]
        if e[2] is not None:
            invalid_answers += aa + ba
            not_last_good += (aa, ba)[1 - good]
    print(json.dumps({
        "sighup_logged": hups,
        "reloads_ok_logged": ok,
        "reloads_failed_logged": len(failed),
        "first_error": failed[0][2] if failed else None,
        "written": written,
        "epochs": len(epochs),
        "epochs_by_majority": by_majority,
        "epochs_answers": sum(sum(c) for c in counts),
        "other_config": other_config,
        "invalid_windows": sum(1 for e in epochs if e[2] is not None),
        "answers_in_invalid_windows": invalid_answers,
        "not_last_good": not_last_good,
    }))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "free-port":
        print(free_port())
    elif cmd == "queries":
        gen_queries(args[0], int(args[1]), int(args[2]))
    elif cmd == "configs":
        configs(*args)
    elif cmd == "expect":
        expect(args[0], args[1:])
    elif cmd == "crosscheck":
        crosscheck(*args)
    elif cmd == "metric":
        metric(*args)
    elif cmd == "report":
        report(*args)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
