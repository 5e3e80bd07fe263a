#!/usr/bin/env python3
"""Sends a file of newline-terminated syslog lines to 127.0.0.1 as fast as the receiver takes them
(blocking sendall of 256 KiB chunks), then closes the connection(s).

    sender.py PORT[,PORT...] FILE

With several ports the file is cut at line boundaries into as many consecutive parts, each sent
on its own connection by its own thread, all at once (one cluster per port). Prints
"first_byte=<t> last_byte=<t> bytes=<n>" (time.monotonic(), which is CLOCK_MONOTONIC and so
comparable across processes on Linux) on stdout when done.
"""
import socket
import sys
import threading
import time

ports, path = [int(p) for p in sys.argv[1].split(",")], sys.argv[2]
data = open(path, "rb").read()
cuts = [0]
for k in range(1, len(ports)):
    at = data.find(b"\n", len(data) * k // len(ports))
    cuts.append(at + 1 if at >= 0 else len(data))
cuts.append(len(data))
socks = []
for port in ports:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    socks.append(s)
chunk = 256 * 1024
ends = []


def send(s, part):
    view = memoryview(part)
    for off in range(0, len(part), chunk):
        s.sendall(view[off:off + chunk])
    ends.append(time.monotonic())
    s.shutdown(socket.SHUT_WR)
    s.close()


first = time.monotonic()
threads = [threading.Thread(target=send, args=(s, data[cuts[i]:cuts[i + 1]])) for i, s in enumerate(socks)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"first_byte={first:.6f} last_byte={max(ends):.6f} bytes={len(data)}", flush=True)
