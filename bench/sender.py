#!/usr/bin/env python3
"""Sends a file of newline-terminated syslog lines to 127.0.0.1:PORT on one TCP connection as
fast as the receiver takes them (blocking sendall of 256 KiB chunks), then closes it.

    sender.py PORT FILE

Prints "first_byte=<t> last_byte=<t> bytes=<n>" (time.monotonic(), which is CLOCK_MONOTONIC and
so comparable across processes on Linux) on stdout when done.
"""
import socket
import sys
import time

port, path = int(sys.argv[1]), sys.argv[2]
data = open(path, "rb").read()
view = memoryview(data)
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
chunk = 256 * 1024
first = time.monotonic()
for off in range(0, len(data), chunk):
    s.sendall(view[off:off + chunk])
last = time.monotonic()
s.shutdown(socket.SHUT_WR)
s.close()
print(f"first_byte={first:.6f} last_byte={last:.6f} bytes={len(data)}", flush=True)
