#!/usr/bin/env python3
"""The benchmark harness behind bench/run.sh (stdlib only). Run bench/run.sh, not this.

Environment (set by run.sh): QAB_BIN (release binary), ACK_BIN, HTTPSINK_BIN, QUICK=1 for a
smoke run. Writes bench/results/latest.json, BENCHMARKS.md and bench/throughput.png.
"""
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
RESULTS = os.path.join(HERE, "results")
QUICK = os.environ.get("QUICK") == "1"
BIN = os.environ["QAB_BIN"]
ACK = os.environ["ACK_BIN"]
HTTPSINK = os.environ["HTTPSINK_BIN"]
PINGPONG = os.environ["PINGPONG_BIN"]
PY = sys.executable  # the real interpreter, not a pyenv shim (its start-up cost is not the peer's)
TICK = os.sysconf("SC_CLK_TCK")

N_CONVERT = 200_000 if QUICK else 1_000_000
N_E2E = 50_000 if QUICK else 200_000
N_SMALL = 5_000 if QUICK else 20_000
CONVERT_REPS = 1 if QUICK else 3
E2E_ROUNDS = 1 if QUICK else 3
FORMATS = ["json", "ecs", "ocsf", "cef", "leef"]

ENVELOPE = (r'template(name="qab_envelope" type="string" string="{\"v\":1,\"cluster\":\"%$.cluster:::json%\",'
            r'\"fromhost_ip\":\"%fromhost-ip:::json%\",\"hostname\":\"%hostname:::json%\",'
            r'\"time\":\"%timereported:::date-rfc3339,json%\",\"uuid\":\"%uuid%\",\"msg\":\"%msg:::json%\"}\n")')


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def load_str():
    return "load " + " ".join(loadavg())


# ---------------------------------------------------------------- input data

def data_file(kind, n):
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, f"{kind}-{n}.log")
    if not os.path.exists(path):
        log(f"bench: generating {path}")
        subprocess.run([PY, os.path.join(HERE, "gen.py"), kind, str(n), path + ".tmp"], check=True)
        os.rename(path + ".tmp", path)
    return path


# ---------------------------------------------------------------- binary alone

def run_rusage(argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL):
    """Runs argv; returns (wall s, user+sys s, maxrss KiB, exit code, stderr text).

    argv runs under /usr/bin/time for its peak RSS (a child forked straight from this Python
    process would count Python's ~20 MiB until it execs); the CPU time is the rusage of the time
    process, which includes its child, with microseconds."""
    errf = tempfile.TemporaryFile()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.monotonic()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", tf.name] + argv, stdout=stdout, stdin=stdin,
                             stderr=errf)
        _, status, ru = os.wait4(p.pid, 0)  # CPU time with microseconds, the child's included
        wall = time.monotonic() - t0
        maxrss = int(tf.read().split()[-1])  # the child's own peak RSS, KiB
    p.returncode = os.waitstatus_to_exitcode(status)
    errf.seek(0)
    return wall, ru.ru_utime + ru.ru_stime, maxrss, p.returncode, errf.read().decode(errors="replace")


def bench_convert():
    rows = {}
    paths = {kind: data_file(kind, N_CONVERT) for kind in ("csv", "json")}
    # Rounds go over every input and format in turn, so that a busy moment on the machine hits
    # them alike; each keeps its best round by CPU time. The two target rows (json) get two more
    # rounds: on a shared machine CPU time itself varies by up to 40 % with what runs beside it
    # (instruction counts, section 7, do not).
    for rnd in range(CONVERT_REPS + (0 if QUICK else 2)):
        for kind, path in paths.items():
            for fmt in FORMATS:
                if rnd >= CONVERT_REPS and fmt != "json":
                    continue
                wall, cpu, rss, code, err = run_rusage([BIN, "convert", "--to", fmt, path])
                if code != 0:
                    raise SystemExit(f"convert failed ({code}): {err[-2000:]}")
                if (kind, fmt) not in rows or cpu < rows[(kind, fmt)][1]:
                    rows[(kind, fmt)] = (wall, cpu, rss, load_str())
    out = []
    for (kind, fmt), (wall, cpu, rss, load) in rows.items():
        size = os.path.getsize(paths[kind])
        row = dict(input=kind, format=fmt, lines=N_CONVERT, bytes=size, wall_s=wall, cpu_s=cpu,
                   events_per_cpu_s=N_CONVERT / cpu, events_per_wall_s=N_CONVERT / wall,
                   mb_per_cpu_s=size / 1e6 / cpu, peak_rss_kib=rss, load=load)
        out.append(row)
        log(f"convert {kind:4} -> {fmt:4}: {row['events_per_cpu_s']:>10,.0f} ev/s/core  "
            f"{row['mb_per_cpu_s']:6.1f} MB/s/core  wall {wall:5.2f}s  rss {rss / 1024:.1f} MiB  ({load})")
    return out


# ---------------------------------------------------------------- /proc helpers

def proc_stat(pid):
    """(ppid, utime+stime seconds) or None."""
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK


def proc_status(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children_of(ppid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(name)
            if st and st[0] == ppid:
                out.append(int(name))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


# ---------------------------------------------------------------- end to end

SHIPPED_QUEUE = dict(workers=2, min_msgs=1000, batch=1024)
ACTION_COMMON = ('confirmTimeout="30000" signalOnClose="on" closeTimeout="5000" '
                 'action.resumeRetryCount="-1" action.resumeInterval="1"')


def queue_params(workers, min_msgs, batch):
    q = ('queue.type="LinkedList" queue.filename="qab_bench" queue.saveOnShutdown="on" '
         f'queue.size="1000000" queue.maxDiskSpace="10g" queue.dequeueBatchSize="{batch}" '
         f'queue.workerThreads="{workers}"')
    if min_msgs:
        q += f' queue.workerThreadMinimumMessages="{min_msgs}"'
    return q


class FileCounter:
    def __init__(self, path):
        self.path, self.off, self.n = path, 0, 0

    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return 0
        cut = data.rfind(b"\n") + 1
        self.n += data.count(b"\n", 0, cut)
        self.off += cut
        return self.n


class HttpCounter:
    def __init__(self, port):
        self.url = f"http://127.0.0.1:{port}/count"

    def count(self):
        try:
            return int(urllib.request.urlopen(self.url, timeout=2).read().split()[0])
        except OSError:
            return 0


def qab_config(tmp, dest, fsync=False, http_port=None, fmt="json", journal=True):
    lines = ["[destination]"]
    if dest == "http":
        lines += ['type = "http"', f'url = "http://127.0.0.1:{http_port}/ingest"', 'preset = "ndjson"']
    else:
        lines += ['type = "file"', f'path = "{tmp}/events.ndjson"', f"fsync = {'true' if fsync else 'false'}"]
    lines += [f'format = "{fmt}"', "[dead_letter]", f'path = "{tmp}/dead-letter.ndjson"',
              "[journal]", f'dir = "{tmp}/journal"'] + ([] if journal else ["enabled = false"]) + [
              "[stats]", "interval_secs = 0"]
    path = os.path.join(tmp, f"{dest}.toml")
    open(path, "w").write("\n".join(lines) + "\n")
    return path


SIMPLE_TEMPLATE = 'template(name="qab_envelope" type="string" string="%msg%\\n")'


def run_e2e(label, prog, n, workers=2, min_msgs=1000, batch=1024, tx=True, confirm=True,
            pin=None, fsync=False, timeout=None, simple_template=False, ack_mode="noreply", journal=True):
    """One end-to-end run: sender -> imtcp -> ruleset -> LinkedList action queue -> omprog -> prog.

    prog: ack | qab-file | qab-http | peer. Returns a dict of results."""
    wire = data_file("wire", n)
    tmp = tempfile.mkdtemp(prefix="qab-bench-")
    os.makedirs(f"{tmp}/spool")
    os.makedirs(f"{tmp}/journal")
    port = free_port()
    sink = None
    out_file = f"{tmp}/events.ndjson"
    if prog == "ack":
        binary = f"{ACK} {out_file}" + ("" if confirm or ack_mode == "reply" else f" {ack_mode}")
        counter = FileCounter(out_file)
    elif prog == "qab-file":
        binary = f"{BIN} omprog --config {qab_config(tmp, 'file', fsync=fsync, journal=journal)}"
        counter = FileCounter(out_file)
    elif prog == "qab-http":
        hport = free_port()
        sink = subprocess.Popen([HTTPSINK, str(hport)], stderr=open(f"{tmp}/httpsink.err", "w"))
        if not wait_port(hport):
            raise SystemExit("httpsink did not start")
        binary = f"{BIN} omprog --config {qab_config(tmp, 'http', http_port=hport)}"
        counter = HttpCounter(hport)
    elif prog == "peer":
        binary = f"{PY} {HERE}/peer_omprog.py {out_file}"
        counter = FileCounter(out_file)
    else:
        raise ValueError(prog)
    conf = f"""global(workDirectory="{tmp}/spool")
module(load="imtcp")
module(load="omprog")
{SIMPLE_TEMPLATE if simple_template else ENVELOPE}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="cluster_bench")
ruleset(name="cluster_bench") {{ set $.cluster = "bench"; call qab_deliver }}
ruleset(name="qab_deliver") {{
  action(type="omprog" name="qab_bench" binary="{binary}" template="qab_envelope"
         output="{tmp}/omprog-output.log"
         confirmMessages="{'on' if confirm else 'off'}" useTransactions="{'on' if tx else 'off'}"
         {ACTION_COMMON}
         {queue_params(workers, min_msgs, batch)})
}}
"""
    open(f"{tmp}/rsyslog.conf", "w").write(conf)
    chk = subprocess.run(["rsyslogd", "-N1", "-f", f"{tmp}/rsyslog.conf"], capture_output=True, text=True)
    if chk.returncode != 0:
        raise SystemExit(f"rsyslogd -N1 failed:\n{chk.stdout}{chk.stderr}")
    argv = ["rsyslogd", "-n", "-C", "-f", f"{tmp}/rsyslog.conf", "-i", f"{tmp}/rsyslogd.pid"]
    if pin is not None:
        argv = ["taskset", "-c", pin] + argv
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS")}
    rs = subprocess.Popen(argv, stdout=open(f"{tmp}/rsyslogd.out", "w"), stderr=subprocess.STDOUT, env=env)
    try:
        if not wait_port(port):
            raise SystemExit(f"rsyslogd did not listen; see {tmp}")
        time.sleep(0.3)
        load_before = load_str()
        rs_cpu0 = proc_stat(rs.pid)[1]
        sender = subprocess.Popen([PY, f"{HERE}/sender.py", str(port), wire], stdout=subprocess.PIPE, text=True)
        t_start = time.monotonic()
        if timeout is None:
            timeout = 60 + n / 2000
        kids = {}  # pid -> (cpu, hwm, rss, cmdline)
        last_scan = 0.0
        got = 0
        t_done = None
        while True:
            now = time.monotonic()
            got = counter.count()
            if got >= n:
                t_done = now
                break
            if now - t_start > timeout:
                break
            if now - last_scan > 0.5:
                last_scan = now
                for pid in children_of(rs.pid):
                    st = proc_stat(pid)
                    if st:
                        kids[pid] = (st[1], proc_status(pid, "VmHWM"), proc_status(pid, "VmRSS"), proc_cmdline(pid))
            time.sleep(0.002)
        # final samples, while everything still runs
        rs_cpu = proc_stat(rs.pid)[1] - rs_cpu0
        for pid in set(children_of(rs.pid)) | set(kids):
            st = proc_stat(pid)
            if st and st[0] == rs.pid:
                kids[pid] = (st[1], proc_status(pid, "VmHWM"), proc_status(pid, "VmRSS"), proc_cmdline(pid))
        sout = sender.communicate(timeout=120)[0]
        m = re.search(r"first_byte=([\d.]+) last_byte=([\d.]+)", sout or "")
        first_byte, last_byte = (float(m.group(1)), float(m.group(2))) if m else (t_start, None)
        load_after = load_str()
    finally:
        rs.send_signal(signal.SIGTERM)
        try:
            rs.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rs.kill()
            rs.wait()
        if sink:
            sink.terminate()
            sink.wait()
    final = counter.count() if prog != "qab-http" else got
    elapsed = (t_done if t_done else time.monotonic()) - first_byte
    prog_kids = [k for k in kids.values() if "taskset" not in k[3]]
    child_cpu = sum(k[0] for k in prog_kids)
    res = dict(label=label, prog=prog, n=n, workers=workers, min_msgs=min_msgs, batch=batch, tx=tx,
               confirm=confirm, pin=pin, fsync=fsync, simple_template=simple_template, ack_mode=ack_mode,
               timeout=timeout, done=t_done is not None, delivered=max(final, got),
               seconds=elapsed, msgs_per_s=(got if t_done is None else n) / elapsed,
               sender_seconds=(last_byte - first_byte) if last_byte else None,
               instances=len(prog_kids), rsyslogd_cpu_s=rs_cpu, prog_cpu_s=child_cpu,
               rsyslogd_cpu_per_M=rs_cpu / n * 1e6, prog_cpu_per_M=child_cpu / n * 1e6,
               prog_hwm_kib=max([k[1] or 0 for k in prog_kids], default=0),
               load_before=load_before, load_after=load_after, tmp=tmp)
    status = "" if t_done else f"  TIMEOUT after {timeout:.0f}s: {got}/{n} delivered"
    log(f"e2e {label:42} {res['msgs_per_s']:>10,.0f} msg/s  {elapsed:6.2f}s  inst={res['instances']}  "
        f"cpu/M rsyslogd={res['rsyslogd_cpu_per_M']:5.1f}s prog={res['prog_cpu_per_M']:5.1f}s  "
        f"hwm={res['prog_hwm_kib'] / 1024:.1f}MiB  ({load_after}){status}")
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# ---------------------------------------------------------------- pipe round trips

def bench_pingpong():
    """Round trips per second of a 1-byte pipe ping-pong between two processes (no rsyslog)."""
    out = {}
    for name, args in (("1 pair", ["1", "1"]), ("1 pair, both on CPU 0", ["1", "1", "same"]),
                       ("2 pairs", ["2", "1"])):
        best = 0
        for _ in range(1 if QUICK else 2):
            r = subprocess.run([PINGPONG] + args, capture_output=True, text=True, check=True)
            best = max(best, int(r.stdout.strip()))
        out[name] = dict(round_trips_per_s=best, load=load_str())
        log(f"pingpong {name:22} {best:>10,} round trips/s ({load_str()})")
    return out


# ---------------------------------------------------------------- startup

def bench_startup(reps=20):
    tmp = tempfile.mkdtemp(prefix="qab-bench-start-")
    os.makedirs(f"{tmp}/journal")
    cfg = qab_config(tmp, "file")
    times = []
    for _ in range(reps):
        t0 = time.monotonic()
        p = subprocess.Popen([BIN, "omprog", "--config", cfg], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = os.read(p.stdout.fileno(), 16)
            if not chunk:
                break
            buf += chunk
        t1 = time.monotonic()
        p.stdin.close()
        p.wait()
        if buf != b"OK\n":
            raise SystemExit(f"startup: expected OK, got {buf!r}")
        times.append((t1 - t0) * 1000)
    shutil.rmtree(tmp, ignore_errors=True)
    res = dict(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times), reps=reps, load=load_str())
    log(f"startup to OK: median {res['median_ms']:.1f} ms (min {res['min_ms']:.1f}, max {res['max_ms']:.1f}) ({res['load']})")
    return res


# ---------------------------------------------------------------- profile

def bench_profile(force=False):
    if not shutil.which("valgrind") or (QUICK and not force):
        return None
    out = {}
    for kind in ("csv", "json", "envelope"):
        n = 100_000
        path = data_file(kind, n)
        cg = os.path.join(RESULTS, f"callgrind-{kind}.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", BIN, "convert", "--to", "json", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        ann = subprocess.run(["callgrind_annotate", "--inclusive=no", cg], capture_output=True, text=True).stdout
        total = 0
        m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", ann)
        if m:
            total = int(m.group(1).replace(",", ""))
        top = []
        for line in ann.splitlines():
            mm = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S.*)", line)
            if mm and "PROGRAM TOTALS" not in line:
                name = mm.group(3)
                name = re.sub(r"^(\?\?\?|\S*\.[A-Za-z]+):", "", name, count=1)
                name = re.sub(r" \[[^\]]*\]$", "", name)
                top.append((int(mm.group(1).replace(",", "")), float(mm.group(2)), name[:110]))
            if len(top) >= 15:
                break
        out[kind] = dict(lines=n, instructions=total, per_event=total / n, top=top)
        log(f"callgrind {kind}: {total / n:,.0f} instructions per event; top: " +
            "; ".join(f"{name.split('::')[-1][:40]} {ir / n:,.0f}" for ir, _, name in top[:8]))
    # Instructions per event for every output format (20,000 lines each: the count per event is
    # stable), the load-independent check of "every format within 2x".
    fmts = out["formats"] = {}
    for kind in ("csv", "json"):
        path = data_file(kind, 20_000)
        for fmt in FORMATS:
            r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", BIN, "convert", "--to",
                                fmt, path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
            m = re.search(r"refs:\s+([\d,]+)", r.stderr)
            fmts[f"{kind}/{fmt}"] = int(m.group(1).replace(",", "")) / 20_000 if m else 0
        log(f"callgrind {kind} per format: " + ", ".join(f"{f} {fmts[kind + '/' + f]:,.0f}" for f in FORMATS))
    return out


# ---------------------------------------------------------------- main

def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    rv = subprocess.run(["rsyslogd", "-v"], capture_output=True, text=True).stdout.splitlines()[0].replace("compiled with:", "").strip()
    return dict(nproc=os.cpu_count(), cpu=cpu, kernel=platform.release(), rsyslogd=rv,
                date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), load_start=load_str(),
                rustc=subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip())


def main():
    os.makedirs(RESULTS, exist_ok=True)
    if os.environ.get("PROFILE_ONLY") == "1":  # bench/run.sh profile: callgrind only, no files rewritten
        json.dump(bench_profile(force=True), open(os.path.join(RESULTS, "profile.json"), "w"), indent=1)
        return
    t0 = time.monotonic()
    R = dict(machine=machine(), quick=QUICK, command=os.environ.get("BENCH_COMMAND", "bench/run.sh"),
             n_convert=N_CONVERT, n_e2e=N_E2E, n_small=N_SMALL, convert_reps=CONVERT_REPS, e2e_rounds=E2E_ROUNDS)
    log(f"bench: {R['machine']}")
    R["convert"] = bench_convert()
    R["startup"] = bench_startup()
    R["pingpong"] = bench_pingpong()
    e2e = R["e2e"] = {}
    # Rounds interleave the programs so that a change in the machine's load hits them alike; each
    # program keeps its best round (the one least disturbed by other processes).
    for rnd in range(E2E_ROUNDS):
        for qname, workers in (("shipped", 2), ("one", 1)):
            for prog in ("ack", "qab-file", "qab-http", "peer"):
                r = run_e2e(f"{qname}: {prog} (round {rnd + 1})", prog, N_E2E, workers=workers)
                key = f"{qname}/{prog}"
                runs = e2e[key]["runs"] if key in e2e else []
                runs.append(r["msgs_per_s"])
                if key not in e2e or r["msgs_per_s"] > e2e[key]["msgs_per_s"]:
                    e2e[key] = r
                e2e[key]["runs"] = runs
    e2e["shipped/qab-file-fsync"] = run_e2e("shipped: qab-file, fsync=true (default)", "qab-file", N_E2E, fsync=True)
    e2e["shipped/qab-file-nojournal"] = run_e2e("shipped: qab-file, [journal] enabled=false", "qab-file", N_E2E,
                                                journal=False)
    sw = R["sweeps"] = {}
    for prog in ("ack", "qab-file"):
        sw[f"notx/{prog}"] = run_e2e(f"no transactions: {prog}", prog, N_SMALL, tx=False)
    for batch in (128, 1024, 4096):
        for prog in ("ack", "qab-file"):
            sw[f"batch{batch}/{prog}"] = (e2e[f"shipped/{prog}"] if batch == 1024 else
                                          run_e2e(f"dequeueBatchSize={batch}: {prog}", prog, N_E2E, batch=batch))
    for workers in (1, 2, 4):
        for prog in ("ack", "qab-file"):
            key = {1: "one", 2: "shipped"}.get(workers)
            sw[f"workers{workers}/{prog}"] = (e2e[f"{key}/{prog}"] if key else
                                              run_e2e(f"workerThreads={workers}: {prog}", prog, N_E2E, workers=workers))
    for prog in ("ack", "qab-file"):
        sw[f"pinned1/{prog}"] = run_e2e(f"one instance, all on CPU 0: {prog}", prog, N_E2E, workers=1, pin="0")
    sw["nominmsgs/ack"] = run_e2e("workerThreads=2, no MinimumMessages: ack", "ack", N_E2E, min_msgs=0)
    for qname, workers in (("shipped", 2), ("one", 1)):
        sw[f"simpletemplate-{qname}/ack"] = run_e2e(f"template %msg%, {qname}: ack", "ack", N_E2E, workers=workers,
                                                    simple_template=True)
    sw["confirmoff-tx/ack"] = run_e2e("confirmMessages=off, transactions: ack", "ack", N_SMALL, confirm=False)
    sw["confirmoff-notx/ack"] = run_e2e("confirmMessages=off, no transactions: ack", "ack", N_SMALL, confirm=False, tx=False)
    sw["confirmoff-notx-reply/ack"] = run_e2e("confirmMessages=off, no tx, ack still replying", "ack", N_SMALL,
                                              confirm=False, tx=False, ack_mode="reply")
    sw["confirmoff-notx-lazy/ack"] = run_e2e("confirmMessages=off, no tx, ack flushing at exit only", "ack", N_SMALL,
                                             confirm=False, tx=False, ack_mode="lazy", timeout=10)
    R["profile"] = bench_profile()
    R["machine"]["load_end"] = load_str()
    R["total_seconds"] = time.monotonic() - t0
    path = os.path.join(RESULTS, "latest.json")
    json.dump(R, open(path, "w"), indent=1)
    log(f"bench: results in {path} ({R['total_seconds']:.0f} s)")
    import report
    report.write(R)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
