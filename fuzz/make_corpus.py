#!/usr/bin/env python3
"""Writes the small seed corpus under fuzz/corpus/<target>/: a few valid
packets of each kind, so the fuzzer starts from real structure."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


SRC = bytes([198, 18, 0, 2])
DST = bytes([198, 18, 0, 1])


def tcp(flags, payload=b"", options=b""):
    off = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", 40000, 5001, 0x12345678, 0x9ABCDEF0, off << 4, flags, 64240, 0, 0) + options
    seg = hdr + payload
    pseudo = SRC + DST + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def ipv4(proto, payload):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, SRC, DST)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def eth(ethertype, payload):
    return bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]) + struct.pack("!H", ethertype) + payload


def icmp_echo():
    body = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"ping"
    return body[:2] + struct.pack("!H", csum(body)) + body[4:]


def arp():
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, bytes([2, 0, 0, 0, 0, 2]), SRC, b"\0" * 6, DST)


syn_opts = bytes([2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 100, 0, 0, 0, 0, 1, 3, 3, 7])
sack_opts = bytes([1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8, 1, 1, 5, 18]) + struct.pack("!IIII", 1000, 2000, 3000, 4000)
samples = {
    "tcp": [tcp(0x02, options=syn_opts), tcp(0x18, b"GET / HTTP/1.1\r\n\r\n"), tcp(0x10, options=sack_opts), tcp(0x11)],
    "ipv4": [ipv4(6, tcp(0x02, options=syn_opts)), ipv4(1, icmp_echo())],
    "icmp": [icmp_echo()],
    "arp": [arp()],
    "ethernet": [eth(0x0806, arp())],
    "frame": [eth(0x0800, ipv4(6, tcp(0x02, options=syn_opts))), eth(0x0800, ipv4(1, icmp_echo())), eth(0x0806, arp())],
}
for target, packets in samples.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, p in enumerate(packets):
        with open(os.path.join(d, f"seed{i}"), "wb") as f:
            f.write(p)
