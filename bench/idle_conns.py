#!/usr/bin/env python3
"""Holds N idle MQTT 3.1.1 connections over plain TCP, TLS, WebSocket or
secure WebSocket, and prints the broker's memory per connection:
(VmRSS while holding - VmRSS before) / connections. Nothing but the
standard library: sockets, ssl, and the WebSocket upgrade and one masked
binary frame written by hand (the client side only needs that much).

    python3 bench/idle_conns.py --kind tls --port 8883 --cafile ca.pem \
        --count 2000 --pid $(pidof herald) [--path /mqtt] [--json out.json]

Used by bench/listeners.sh; prints one JSON object.
"""

import argparse
import base64
import json
import os
import socket
import ssl
import sys
import time


def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id):
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return b"\x10" + varint(len(body)) + body


def ws_frame(payload):
    """One masked binary frame (RFC 6455 §5.2); clients must mask."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytearray([0x82])
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += n.to_bytes(8, "big")
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_exact(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    return got


def open_one(args, ctx, i, source):
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=30,
                                   source_address=(source, 0))
    s = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    packet = connect_packet(f"idle-{args.kind}-{i}")
    if args.kind in ("ws", "wss"):
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET {args.path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        s.sendall(ws_frame(packet))
        # CONNACK in one unmasked binary frame: 0x82 0x04 + 4 bytes.
        frame = read_exact(s, 6)
        if frame[2:] != b"\x20\x02\x00\x00":
            raise ConnectionError(f"no CONNACK: {frame!r}")
    else:
        s.sendall(packet)
        if read_exact(s, 4) != b"\x20\x02\x00\x00":
            raise ConnectionError("no CONNACK")
    return s


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=["tcp", "tls", "ws", "wss"], required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--cafile")
    p.add_argument("--path", default="/mqtt")
    p.add_argument("--sources", type=int, default=4,
                   help="connect from 127.0.0.1 .. 127.0.0.N, round robin")
    args = p.parse_args()
    ctx = None
    if args.kind in ("tls", "wss"):
        ctx = ssl.create_default_context(cafile=args.cafile)
        if args.kind == "tls":
            ctx.set_alpn_protocols(["mqtt"])
    before = rss_kib(args.pid)
    held, errors = [], []
    started = time.monotonic()
    for i in range(args.count):
        try:
            held.append(open_one(args, ctx, i, f"127.0.0.{1 + i % args.sources}"))
        except Exception as e:  # noqa: BLE001 - counted and reported
            if len(errors) < 5:
                errors.append(str(e))
    took = time.monotonic() - started
    time.sleep(2)
    after = rss_kib(args.pid)
    per = (after - before) * 1024 / len(held) if held and before and after else None
    print(json.dumps({
        "kind": args.kind, "requested": args.count, "connected": len(held),
        "connect_s": round(took, 2), "rss_before_kib": before, "rss_held_kib": after,
        "rss_per_connection_bytes": per, "errors": errors,
    }))
    for s in held:
        s.close()
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
