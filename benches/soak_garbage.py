#!/usr/bin/env python3
"""Hostile UDP traffic for benches/soak.sh, bounded in rate and time.

usage: soak_garbage.py HOST PORT SECONDS PACKETS_PER_SECOND

A quarter each: random bytes (0-600), mutated valid queries (bit flips, truncation, random
counts), responses (QR=1, must be dropped), and valid queries for random names with random ECS
subnets (IPv4 and IPv6; nothing per name or per subnet may be kept by the server). Prints one
summary line: sent, and answers received.
"""
import os
import random
import socket
import struct
import sys
import time

host, port, seconds, pps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(0x50AC)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setblocking(False)


def name(labels):
    return b"".join(bytes([len(l)]) + l for l in labels) + b"\x00"


def query(qname, qtype=1, ecs=None):
    header = struct.pack(">HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, 1 if ecs is not None else 0)
    msg = header + name(qname) + struct.pack(">HH", qtype, 1)
    if ecs is not None:
        family, prefix, addr = ecs
        octets = addr[: (prefix + 7) // 8]
        opt = struct.pack(">HHHBB", 8, 4 + len(octets), family, prefix, 0) + octets
        msg += b"\x00" + struct.pack(">HHIH", 41, 1232, 0, len(opt)) + opt
    return msg


def random_ecs():
    if rng.random() < 0.7:
        prefix = rng.randint(8, 32)
        addr = (rng.getrandbits(32) & (0xFFFFFFFF << (32 - prefix))).to_bytes(4, "big")
        return (1, prefix, addr)
    prefix = rng.randint(16, 128)
    addr = (rng.getrandbits(128) & ((1 << 128) - 1 << (128 - prefix))).to_bytes(16, "big")
    return (2, prefix, addr)


def random_name():
    label = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(1, 30)))
    return [label, b"geo", b"example"] if rng.random() < 0.8 else [label, b"app", b"geo", b"example"]


def mutate(p):
    p = bytearray(p)
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(4)
        if k == 0 and p:
            i = rng.randrange(len(p))
            p[i] ^= 1 << rng.randrange(8)
        elif k == 1:
            del p[rng.randrange(len(p) + 1):]
        elif k == 2 and len(p) >= 12:
            at = 4 + 2 * rng.randrange(4)
            p[at:at + 2] = struct.pack(">H", rng.randrange(5))
        else:
            p += os.urandom(rng.randrange(32))
    return bytes(p[:600])


sent = received = 0
end = time.monotonic() + seconds
interval = 1.0 / pps
next_at = time.monotonic()
while time.monotonic() < end:
    kind = sent % 4
    if kind == 0:
        pkt = os.urandom(rng.randrange(601))
    elif kind == 1:
        pkt = mutate(query([b"app", b"geo", b"example"], rng.choice([1, 28, 255, 6]), random_ecs() if rng.random() < 0.5 else None))
    elif kind == 2:
        q = bytearray(query(random_name()))
        q[2] |= 0x80
        pkt = bytes(q)
    else:
        pkt = query(random_name(), rng.choice([1, 28]), random_ecs())
    try:
        sock.sendto(pkt, (host, port))
        sent += 1
    except BlockingIOError:
        pass
    try:
        while True:
            sock.recv(65535)
            received += 1
    except BlockingIOError:
        pass
    next_at += interval
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
time.sleep(0.5)
try:
    while True:
        sock.recv(65535)
        received += 1
except BlockingIOError:
    pass
print(f"sent {sent} garbage/random packets, {received} answers")
