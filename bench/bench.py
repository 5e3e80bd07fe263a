#!/usr/bin/env python3
"""The benchmark harness behind bench/run.sh (stdlib only). Run bench/run.sh, not this.

Environment (set by run.sh): QAB_BIN (release binary), ACK_BIN, PINGPONG_BIN, QUICK=1 for a
smoke run. Writes bench/results/latest.json, BENCHMARKS.md and bench/throughput.png.
"""
import collections
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
RESULTS = os.path.join(HERE, "results")
QUICK = os.environ.get("QUICK") == "1"
BIN = os.environ["QAB_BIN"]
PINGPONG = os.environ["PINGPONG_BIN"]
PY = sys.executable  # the real interpreter, not a pyenv shim (its start-up cost is not the peer's)

N_CONVERT = 200_000 if QUICK else 1_000_000
N_E2E = 50_000 if QUICK else 300_000
CONVERT_REPS = 1 if QUICK else 3
E2E_ROUNDS = 1 if QUICK else 3
COST_ROUNDS = 1 if QUICK else 2
FORMATS = ["json", "ecs", "ocsf", "cef", "leef"]

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
        if os.path.exists(path + ".tmp.expect"):
            os.rename(path + ".tmp.expect", path + ".expect")
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


# ---------------------------------------------------------------- end to end: the shipped wiring and its peers

def med(xs):
    return statistics.median(xs) if xs else 0


def merge_rounds(runs):
    """One row from the rounds of one configuration: medians of rate and CPU, every round's rate
    listed, worst correctness, largest spill and RSS."""
    r = dict(runs[0])
    for k in ("msgs_per_s", "daemon_cpu_per_M", "prog_cpu_per_M", "total_cpu_per_M", "cpu_per_M_events", "seconds"):
        r[k] = med([x[k] for x in runs])
    for k in ("wrong", "missing", "spill_bytes", "daemon_hwm_kib", "prog_hwm_kib", "instances"):
        r[k] = max(x[k] for x in runs)
    r["done"] = all(x["done"] for x in runs)
    r["rounds"] = [dict(msgs_per_s=x["msgs_per_s"], total_cpu_per_M=x["total_cpu_per_M"], load=x["load_after"]) for x in runs]
    r["load_after"] = runs[-1]["load_after"]
    return r


def bench_costs(wiring, wire):
    """The cost of each element: the shipped wiring with the acknowledger (it does the same work
    for every variant), one element changed at a time, interleaved. A burst larger than the action
    queue's in-memory part spills to disk, and whether it does depends on how fast each variant
    takes messages off the socket; so that the spill does not mask the elements, every variant
    runs with an action queue that holds the burst ("queue-holds-burst"), and the spill is
    measured on its own: the shipped wiring and version 1 as they are."""
    hold = "queue-holds-burst"
    keys = ["shipped"] + [v for v in wiring.VARIANTS if v != hold] + ["shipped-as-is", "v1-as-is"]
    variants = {"shipped": (hold,), "shipped-as-is": (), "v1-as-is": ("v1",)}
    costs = collections.defaultdict(list)
    for rnd in range(COST_ROUNDS):
        for key in keys:
            costs[key].append(wiring.run(f"cost {key} (round {rnd + 1})", "shipped", wire, N_E2E, program="ack",
                                         variant=variants.get(key, (key, hold)), py=PY))
    names = {k: v[0] for k, v in wiring.VARIANTS.items()}
    names["shipped-as-is"] = ("the shipped wiring as it is: the action queue spills past highWatermark 80,000 "
                              "(the difference to the first row is the spill)")
    names["v1-as-is"] = "version 1 as shipped before, as it was (its own queue sizes)"
    return {k: merge_rounds(v) for k, v in costs.items()}, names


def bench_wiring(wiring):
    """Section 2 (peers side by side), 3 (the cost of each element of the wiring) and 4 (how the
    cost grows with clusters and destinations). Every configuration runs in interleaved rounds,
    so a change in the machine's load hits all of them alike."""
    wire = data_file("qcsv", N_E2E)
    out = dict(missing=[])
    sng, why = wiring.syslog_ng()
    if why:
        out["missing"].append(why)
        log(f"bench: {why}")
    else:
        out["syslog_ng_version"] = sng[2]
    ok, why = wiring.mmnormalize_ok()
    if not ok:
        out["missing"].append(why)
        log(f"bench: {why}")
    peers = [("syslog-ng", dict(kind="syslog-ng"))] if sng else []
    if ok:
        peers.append(("mmnormalize", dict(kind="mmnormalize")))
    before = os.environ.get("BEFORE_BIN")
    if before and os.path.exists(before) and wiring.before_available():
        # What was shipped before issue 11: its wiring (envelope version 1) and its binary.
        peers.append(("before", dict(kind="shipped", program="qab", fsync=False, variant=("v1",), qab_bin=before)))
    else:
        out["missing"].append(f"the 'before' row: no binary of {wiring.BEFORE_REV} (bench/run.sh builds it)")
    peers += [("qab", dict(kind="shipped", program="qab", fsync=False)),
              ("qab-fsync", dict(kind="shipped", program="qab", fsync=True)),
              ("ack", dict(kind="shipped", program="ack"))]
    runs = collections.defaultdict(list)
    for rnd in range(E2E_ROUNDS):
        for key, kw in peers:
            runs[key].append(wiring.run(f"{key} (round {rnd + 1})", wire=wire, n=N_E2E, py=PY, **kw))
    out["peers"] = {k: merge_rounds(v) for k, v in runs.items()}

    out["costs"], out["variant_names"] = bench_costs(wiring, wire)
    import queue_memory
    out["queue_memory"] = queue_memory.run(wire, N_E2E)

    # How the cost grows: our binary with the shipped default (fsync on).
    scale = {}
    for clusters, dests in ((1, 1), (4, 1), (16, 1), (1, 2), (1, 4)):
        scale[f"{clusters}x{dests}"] = wiring.run(f"scale {clusters} clusters x {dests} destinations", "shipped", wire, N_E2E,
                                                 clusters=clusters, dests=dests, program="qab", fsync=True, py=PY)
    out["scale"] = scale
    return out


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
    import wiring
    tmp = tempfile.mkdtemp(prefix="qab-bench-start-")
    cfg = wiring.qab_toml(tmp, 0, fsync=False)
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
    for kind in ("csv", "json", "envelope", "envelope2"):
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


def bench_brokers():
    """Section 7: the amqp and kafka destinations beside the file destination (bench/brokers.py)."""
    import brokers
    return brokers.bench(data_file("qcsv", N_E2E), N_E2E, E2E_ROUNDS, PY)


def main():
    os.makedirs(RESULTS, exist_ok=True)
    if os.environ.get("BROKERS_ONLY") == "1":  # bench/run.sh brokers: section 7 only, replaced in place
        import brokers
        R = dict(machine=machine(), quick=QUICK, command=os.environ.get("BENCH_COMMAND", "bench/run.sh"))
        R["brokers"] = bench_brokers()
        json.dump(R, open(os.path.join(RESULTS, "brokers.json"), "w"), indent=1)
        brokers.update_md(os.path.join(ROOT, "BENCHMARKS.md"),
                          brokers.section(R["brokers"], QUICK, R["machine"]["date"], R["command"]))
        log("bench: section 7 of BENCHMARKS.md rewritten")
        return
    if os.environ.get("PROFILE_ONLY") == "1":  # bench/run.sh profile: callgrind only, no files rewritten
        json.dump(bench_profile(force=True), open(os.path.join(RESULTS, "profile.json"), "w"), indent=1)
        return
    t0 = time.monotonic()
    R = dict(machine=machine(), quick=QUICK, command=os.environ.get("BENCH_COMMAND", "bench/run.sh"),
             n_convert=N_CONVERT, n_e2e=N_E2E, convert_reps=CONVERT_REPS, e2e_rounds=E2E_ROUNDS,
             cost_rounds=COST_ROUNDS)
    log(f"bench: {R['machine']}")
    R["convert"] = bench_convert()
    R["startup"] = bench_startup()
    R["pingpong"] = bench_pingpong()
    import wiring
    R["wiring"] = bench_wiring(wiring)
    R["brokers"] = bench_brokers()
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
