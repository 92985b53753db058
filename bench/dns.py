#!/usr/bin/env python3
"""A tiny authoritative DNS responder for the benchmark, so mxhook's sender authentication ([auth] dns)
runs against real DNS traffic without leaving the machine. TXT records for the load generators'
sender domains (SPF passes for 127.0.0.1, DMARC p=none); every other name is NXDOMAIN.

usage: dns.py PORT
"""
import socket
import struct
import sys

TXT = {
    "src.test": "v=spf1 ip4:127.0.0.1 -all",
    "mxbench.test": "v=spf1 ip4:127.0.0.1 -all",
    "_dmarc.src.test": "v=DMARC1; p=none",
    "_dmarc.mxbench.test": "v=DMARC1; p=none",
}
TTL = 3600
NEGATIVE_TTL = 300


def qname(packet, off):
    labels = []
    while packet[off]:
        n = packet[off]
        labels.append(packet[off + 1 : off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels).lower(), off + 1


def soa():
    """The root zone's SOA (this responder answers for every name): negative TTL = NEGATIVE_TTL."""
    rdata = b"\x00\x00" + struct.pack("!IIIII", 1, 3600, 600, 86400, NEGATIVE_TTL)
    return b"\x00" + struct.pack("!HHIH", 6, 1, NEGATIVE_TTL, len(rdata)) + rdata


def answer(packet):
    (qid, flags, qd) = struct.unpack("!HHH", packet[:6])
    name, off = qname(packet, 12)
    qtype, _qclass = struct.unpack("!HH", packet[off : off + 4])
    question = packet[12 : off + 4]
    rd = flags & 0x0100
    text = TXT.get(name) if qtype == 16 else None
    if text is None:
        # NOERROR/NODATA for a name we know under another type, else NXDOMAIN.
        # With the zone's SOA in the authority section, as every real server sends (RFC 2308): it
        # is what lets a resolver cache the negative answer.
        rcode = 0 if name in TXT else 3
        return struct.pack("!HHHHHH", qid, 0x8400 | rd | 0x80 | rcode, 1, 0, 1, 0) + question + soa()
    data = text.encode()
    rdata = bytes([len(data)]) + data
    rr = struct.pack("!HHHIH", 0xC00C, 16, 1, TTL, len(rdata)) + rdata
    return struct.pack("!HHHHHH", qid, 0x8400 | rd | 0x80, 1, 1, 0, 0) + question + rr


def main():
    port = int(sys.argv[1])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print(f"dns: 127.0.0.1:{port}", file=sys.stderr, flush=True)
    while True:
        packet, addr = s.recvfrom(4096)
        try:
            s.sendto(answer(packet), addr)
        except Exception as e:  # noqa: BLE001 - a malformed query gets no answer
            print("dns: bad query:", e, file=sys.stderr)


if __name__ == "__main__":
    main()
