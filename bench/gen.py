#!/usr/bin/env python3
"""Generates realistic Qumulo audit lines for the benchmarks (stdlib only, deterministic).

  gen.py csv  N FILE    # RSYSLOG_TraditionalFileFormat header + CSV body   (as rsyslog's omfile writes it)
  gen.py json N FILE    # RSYSLOG_FileFormat (RFC 3339) header + JSON body
  gen.py envelope N FILE  # what omprog hands our binary: the qab_envelope JSON rsyslog renders
                        # around a wire line (CSV and JSON bodies alternating)
  gen.py envelope2 N FILE # the same as version 2 of the envelope (tab-separated, the message raw)
  gen.py wire N FILE    # what Qumulo sends over TCP: <134>Jun  6 ... q-node-1 qumulo <body>,
                        # CSV and JSON bodies alternating (for the end-to-end runs)
  gen.py qcsv N FILE    # the peers' job: wire lines with CSV bodies only, 1 % with a quoted comma in
                        # the path, 1 % with doubled quotes, 1 % with an IPv6 client, ~1 % with
                        # empty fields (logins); FILE.expect holds each line's fields as JSON

Every line is distinct: event n carries n in its file id and path. The mix of operations,
protocols, users, statuses and path lengths follows a busy SMB/NFS file server: mostly reads,
metadata reads and writes, some creates/deletes/renames, a few logins and denied accesses.
"""
import json
import random
import sys

OPS = [  # (operation, weight, kind) kind: f=file, d=directory, r=rename, n=no object
    ("fs_read_data", 30, "f"), ("fs_read_metadata", 20, "f"), ("fs_write_data", 14, "f"),
    ("fs_open", 8, "f"), ("fs_write_metadata", 5, "f"), ("fs_list_directory", 6, "d"),
    ("fs_create_file", 4, "f"), ("fs_delete", 3, "f"), ("fs_rename", 2, "r"),
    ("fs_create_directory", 1, "d"), ("smb_close_handle", 4, "f"), ("smb_login", 1, "n"),
    ("fs_read_link", 1, "f"), ("fs_write_file_lock", 1, "f"),
]
PROTOS = ["smb2"] * 6 + ["nfs3"] * 2 + ["nfs4", "api"]
USERS = [("AD\\alice", "500"), ("AD\\bob", "1104"), ("CORP\\carol", "1201"), ("svc_backup", "2001"),
         ("CORP\\dave.m", "1320"), ("AD\\eve", "1533"), ("root", "0"), ("CORP\\frank", "1777")]
DIRS = ["/projects/q1", "/projects/q2/drafts", "/home/alice/Documents", "/hr/payroll/2024",
        "/finance/reports/quarterly", "/engineering/builds/nightly/x86_64", "/shared/scans",
        "/media/video/raw/2024-06-06"]
EXTS = [".docx", ".xlsx", ".pdf", ".txt", ".tar.gz", ".png", ".csv", ".mp4"]
SID = "S-1-5-21-9876543210-5678901234-1234567890-"
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def events(n_total, seed=42):
    rnd = random.Random(seed)
    ops = [o for o, w, k in OPS for _ in range(w)]
    kinds = {o: k for o, w, k in OPS}
    for n in range(n_total):
        op = ops[rnd.randrange(len(ops))]
        kind = kinds[op]
        user, auth = USERS[rnd.randrange(len(USERS))]
        proto = PROTOS[rnd.randrange(len(PROTOS))]
        ip = f"10.{20 + n % 7}.{(n >> 3) % 250}.{1 + n % 200}"
        status = "ok" if rnd.random() < 0.97 else "fs_access_denied_error"
        d = DIRS[rnd.randrange(len(DIRS))]
        fid, path, target = "", "", ""
        if kind == "f":
            fid, path = str(100000 + n), f"{d}/file-{n}{EXTS[n % len(EXTS)]}"
        elif kind == "d":
            fid, path = str(100000 + n), f"{d}/dir-{n}/"
        elif kind == "r":
            fid, path, target = str(100000 + n), f"{d}/file-{n}.tmp", f"{d}/file-{n}{EXTS[n % len(EXTS)]}"
        if op == "smb_login":
            proto = "smb2"
        secs = 14 * 3600 + 52 * 60 + n // 2000  # ~2000 events per second of audit time
        yield dict(n=n, op=op, user=user, auth=auth, proto=proto, ip=ip, status=status,
                   fid=fid, path=path, target=target, secs=secs, size=(n * 7919) % 1048576)


def csv_body(e):
    q = lambda s: s.replace('"', '""')  # Qumulo doubles a quote inside a quoted field
    return f'{e["ip"]},"{q(e["user"])}",{e["proto"]},{e["op"]},{e["status"]},{e["fid"]},"{q(e["path"])}","{q(e["target"])}"'


def tricky(e):
    """The lines that tell a CSV reader from a comma split: 1 in 100 has a comma inside the quoted
    path (and target), 1 in 100 doubled quotes, 1 in 100 an IPv6 client address."""
    e = dict(e)
    k = e["n"] % 100
    if k == 7 and e["path"]:
        e["path"] = e["path"].replace("/file-", "/budget, final/file-").replace("/dir-", "/a,b/dir-")
        e["target"] = e["target"].replace("/file-", "/budget, final/file-")
    elif k == 57 and e["path"]:
        e["path"] = e["path"].replace("/file-", '/the "best" file-').replace("/dir-", '/"q"/dir-')
    elif k == 31:
        e["ip"] = f"2001:db8::{e['n'] % 65536:x}"
    return e


def json_body(e):
    details = {}
    if e["path"]:
        details["file_id"] = e["fid"]
        details["path"] = e["path"]
        if e["op"] == "fs_rename":
            details["target"] = e["target"]
        if e["op"] in ("fs_read_data", "fs_write_data"):
            details.update(size=e["size"], offset=0, file_size=e["size"])
    else:
        details = {"second_extra_name": "", "extra_name": ""}
    obj = {"user_id": {"sid": SID + e["auth"], "auth_id": e["auth"], "name": e["user"]},
           "user_ip": e["ip"], "protocol": e["proto"], "operation": e["op"], "status": e["status"],
           "details": details}
    return json.dumps(obj)  # Qumulo writes ", " and ": " separators, like json.dumps' default


def rsyslog_json(s):
    """rsyslog's :::json escaping: like JSON, and '/' is escaped too."""
    return json.dumps(s, ensure_ascii=False)[1:-1].replace("/", "\\/")


def trad_time(secs):
    return f"Jun  6 {secs // 3600 % 24:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"


def main():
    kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    expect = open(path + ".expect", "w") if kind == "qcsv" else None
    with open(path, "w", buffering=1 << 20) as f:
        w = f.write
        for e in events(n):
            node = f"q-prod-{1 + e['n'] % 4}"
            if kind == "csv":
                w(f"{trad_time(e['secs'])} {node} qumulo {csv_body(e)}\n")
            elif kind == "json":
                s = e["secs"]
                w(f"2024-06-06T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{(e['n'] * 4513) % 1000000:06d}+00:00 "
                  f"{node} qumulo {json_body(e)}\n")
            elif kind == "envelope":
                body = csv_body(e) if e["n"] % 2 == 0 else json_body(e)
                s = e["secs"]
                uuid = f"{(e['n'] * 2654435761) % (1 << 64):016X}{e['n']:016X}"
                w(f'{{"v":1,"cluster":"prod","fromhost_ip":"10.1.0.{1 + e["n"] % 4}","hostname":"{node}",'
                  f'"time":"2024-06-06T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00","uuid":"{uuid}",'
                  f'"msg":"{rsyslog_json(" " + body)}"}}\n')
            elif kind == "envelope2":
                body = csv_body(e) if e["n"] % 2 == 0 else json_body(e)
                s = e["secs"]
                w(f"QAB2\t2026-12-02T06:32:40.{e['n'] % 1000000:06d}+00:00/{e['n']}\t\t"
                  f"2024-06-06T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00\tprod\t10.1.0.{1 + e['n'] % 4}\t"
                  f"{node}\t {body}\n")
            elif kind == "qcsv":
                e = tricky(e)
                w(f"<134>{trad_time(e['secs'])} {node} qumulo {csv_body(e)}\n")
                expect.write(json.dumps([node, e["ip"], e["user"], e["proto"], e["op"], e["status"], e["fid"],
                                         e["path"], e["target"]]) + "\n")
            elif kind == "wire":
                body = csv_body(e) if e["n"] % 2 == 0 else json_body(e)
                w(f"<134>{trad_time(e['secs'])} {node} qumulo {body}\n")
            else:
                sys.exit(f"unknown kind {kind}")


if __name__ == "__main__":
    main()
