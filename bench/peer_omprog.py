#!/usr/bin/env python3
"""REFERENCE PEER for the benchmarks, not part of the product.

A straightforward omprog program written the way one would write it in Python: it reads the
qab_envelope JSON that rsyslog renders, parses the Qumulo body inside it (CSV or JSON), builds
the same canonical JSON event as `qumulo-audit-broker` (id from %uuid%, time, cluster, node,
client, user, protocol, operation, status, outcome, action, object type, file id, paths,
details, source format) and appends it to a file. Protocol as in omprog with
confirmMessages="on" useTransactions="on": OK handshake, OK to BEGIN, DEFER_COMMIT per message,
the batch is written (and flushed) at COMMIT, then OK. No journal, no retries, no
classification cache: it is a measure of what "simple Python" costs, to compare against.

    peer_omprog.py OUTFILE
"""
import csv
import json
import sys

ACTIONS = {
    "fs_create_file": "create", "fs_create_directory": "create", "fs_create_symlink": "create",
    "fs_read_data": "read", "fs_write_data": "write", "fs_delete": "delete", "fs_rename": "rename",
    "fs_read_metadata": "read_metadata", "fs_read_link": "read_metadata",
    "fs_write_metadata": "write_metadata", "fs_write_file_lock": "write_metadata",
    "fs_list_directory": "list", "fs_open": "open", "smb_login": "login", "rest_login": "login",
    "smb_close_handle": "other",
}


def parse_body(body):
    body = body.lstrip()
    if body.startswith("{"):
        try:
            j = json.loads(body)
        except json.JSONDecodeError:
            j = json.loads(body.replace("\\", "\\\\"))
        u = j.get("user_id") or {}
        d = dict(j.get("details") or {})
        ev = {"client_ip": j.get("user_ip"), "user": {k: u[k] for k in ("name", "sid", "auth_id") if u.get(k)},
              "protocol": j.get("protocol"), "operation": j.get("operation"), "status": j.get("status"),
              "file_id": d.pop("file_id", ""), "path": d.pop("path", ""), "target_path": d.pop("target", "")}
        ev["details"] = {k: v for k, v in d.items() if v != ""}
        ev["source_format"] = "json"
        return ev
    f = next(csv.reader([body]))
    if len(f) == 9:
        node = f.pop(1)
    else:
        node = None
    ip, user, proto, op, status, fid, path, target = f
    ev = {"client_ip": ip, "user": {"name": user} if user else {}, "protocol": proto, "operation": op,
          "status": status, "file_id": fid, "path": path, "target_path": target, "details": {},
          "source_format": "csv"}
    if node:
        ev["node"] = node
    return ev


def transform(line):
    env = json.loads(line)
    ev = parse_body(env["msg"])
    op = ev["operation"]
    path = ev["path"]
    t = env.get("time")
    if t and t.endswith("+00:00"):
        t = t[:-6] + "Z"
    out = {"id": env.get("uuid"), "time": t, "cluster": env.get("cluster"),
           "node": ev.get("node") or env.get("hostname"), "fromhost_ip": env.get("fromhost_ip"),
           "client_ip": ev["client_ip"], "user": ev["user"], "protocol": ev["protocol"], "operation": op,
           "status": ev["status"], "outcome": "success" if ev["status"] == "ok" else "failure",
           "action": ACTIONS.get(op, "other"),
           "object_type": "directory" if op in ("fs_create_directory", "fs_list_directory") or path.endswith("/")
           else ("file" if path else "unknown")}
    for k in ("file_id", "path", "target_path"):
        if ev[k]:
            out[k] = ev[k]
    if ev["details"]:
        out["details"] = ev["details"]
    out["source_format"] = ev["source_format"]
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def main():
    out = open(sys.argv[1], "a", encoding="utf-8")
    stdout = sys.stdout
    pending = []

    def reply(s):
        stdout.write(s + "\n")
        stdout.flush()

    reply("OK")
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line == "BEGIN TRANSACTION":
            pending.clear()
            reply("OK")
        elif line == "COMMIT TRANSACTION":
            out.write("".join(pending))
            out.flush()
            pending.clear()
            reply("OK")
        else:
            try:
                pending.append(transform(line) + "\n")
            except Exception as e:  # a bad line must not block the queue
                print(f"peer: bad line: {e}", file=sys.stderr)
            reply("DEFER_COMMIT")
    out.write("".join(pending))
    out.close()


if __name__ == "__main__":
    main()
