"""The shipped wiring and its peers, side by side (stdlib only; bench.py calls it).

Every end-to-end row runs one daemon on the same input (`gen.py qcsv`: Qumulo syslog CSV, 1 % with
a quoted comma, 1 % with doubled quotes, 1 % IPv6 clients, ~1 % empty fields) sent over TCP on
loopback, and waits for one JSON event per line in a local file:

* `shipped`: rsyslogd with the configuration built from the files this repository ships
  (`packaging/rsyslog/qumulo-audit-broker.conf` for the template, `rsyslog.d/30-clusters.conf.example`
  for the cluster ruleset, `rsyslog.d/50-deliver.conf`, `rsyslog.d/20-dest-file.conf` for the
  action), only the paths and ports replaced, running our binary (or the acknowledger `ack.c`);
* `syslog-ng`: syslog-ng 3.38's csv-parser + format-json -> file (Debian's syslog-ng-core,
  extracted into bench/build/syslog-ng: installing it would remove rsyslog);
* `mmnormalize`: rsyslog + mmnormalize (liblognorm v2 rulebase) -> omfile.

CPU is utime+stime from /proc of the daemon (from just before the first byte) plus every child
(its whole life), per million events; RSS is the daemon's VmHWM plus its children's. Each output
is checked line by line against what the generator put in (node, client, user, protocol,
operation, status, file id, path, target): wrong or missing events are counted, never hidden.
"""
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")
SNG_DIR = os.path.join(HERE, "build", "syslog-ng")


def log(*a):
    import sys
    print(*a, file=sys.stderr, flush=True)


def load_str():
    return "load " + " ".join(open("/proc/loadavg").read().split()[:3])


# ---------------------------------------------------------------- /proc

def proc_stat(pid):
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
    return 0


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


def wait_ports(ports, timeout=20):
    end = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > end:
                    return False
                time.sleep(0.02)
    return True


def dir_bytes(path):
    total = 0
    try:
        for e in os.scandir(path):
            if e.is_file(follow_symlinks=False):
                total += e.stat().st_size
    except OSError:
        pass
    return total


# ---------------------------------------------------------------- syslog-ng (extracted, never installed)

def syslog_ng():
    """Path of an extracted syslog-ng 3.38 binary and its environment, or (None, reason).

    Debian's syslog-ng-core conflicts with rsyslog (installing it removes rsyslog), so its .deb
    and the libraries rsyslog's machine lacks are fetched with `apt-get download` and unpacked
    with `dpkg -x` under bench/build/syslog-ng."""
    binary = os.path.join(SNG_DIR, "usr/sbin/syslog-ng")
    if not os.path.exists(binary):
        if not shutil.which("apt-get") or not shutil.which("dpkg"):
            return None, "syslog-ng: no apt-get/dpkg to fetch syslog-ng-core"
        dl = os.path.join(HERE, "build", "debs")
        os.makedirs(dl, exist_ok=True)
        pkgs = ["syslog-ng-core", "libivykis0", "libnet1", "libpcre3"]
        r = subprocess.run(["apt-get", "download"] + pkgs, cwd=dl, capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"syslog-ng: `apt-get download {' '.join(pkgs)}` failed: {r.stderr.strip()[-300:]}"
        for deb in os.listdir(dl):
            if deb.endswith(".deb"):
                subprocess.run(["dpkg", "-x", os.path.join(dl, deb), SNG_DIR], check=True)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(os.path.join(SNG_DIR, p) for p in (
        "usr/lib/syslog-ng", "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"))
    r = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"syslog-ng: extracted binary does not run: {r.stderr.strip()[-300:]}"
    return (binary, env, r.stdout.splitlines()[0]), None


def mmnormalize_ok():
    out = subprocess.run(["rsyslogd", "-v"], capture_output=True, text=True).stdout
    libdir = next((os.path.dirname(p) for p in ("/usr/lib/x86_64-linux-gnu/rsyslog/imtcp.so", "/usr/lib64/rsyslog/imtcp.so",
                                               "/usr/lib/rsyslog/imtcp.so") if os.path.exists(p)), None)
    if libdir and os.path.exists(os.path.join(libdir, "mmnormalize.so")):
        return True, None
    return False, f"rsyslog mmnormalize module missing (apt-get install rsyslog-mmnormalize); {out[:40]}"


# ---------------------------------------------------------------- peer configurations

SNG_CONF = """@version: 3.38
options {{ keep-hostname(yes); chain-hostnames(no); use-dns(no); use-fqdn(no); stats-freq(0); }};
source s_net {{ network(ip("127.0.0.1") port({port}) transport("tcp") max-connections(100)); }};
parser p_csv {{ csv-parser(columns("client_ip", "user", "protocol", "operation", "status", "file_id", "path", "target_path")
                          delimiters(",") quote-pairs('""') flags(escape-double-char) prefix("q.")); }};
destination d_file {{ file("{out}" template("$(format-json time=${{ISODATE}} cluster=bench node=${{HOST}} client_ip=${{q.client_ip}} user=${{q.user}} protocol=${{q.protocol}} operation=${{q.operation}} status=${{q.status}} file_id=${{q.file_id}} path=${{q.path}} target_path=${{q.target_path}})\\n")); }};
log {{ source(s_net); parser(p_csv); destination(d_file); }};
"""

# liblognorm v2: char-sep allows empty fields; the string parser with doubled-quote escapes and
# lazy matching (the field ends at the closing quote, a comma follows) reads Qumulo's quoted fields.
QSTR = '{"quoting.mode":"required","quoting.escape.mode":"double","matching.mode":"lazy"}'
RULEBASE = ("version=2\nrule=: %client_ip:char-sep:,%,%user:string" + QSTR + "%,%protocol:char-sep:,%,"
            "%operation:char-sep:,%,%status:char-sep:,%,%file_id:char-sep:,%,%path:string" + QSTR +
            "%,%target_path:string" + QSTR + "%\n")

MMN_CONF = """global(workDirectory="{tmp}/spool")
module(load="imtcp") module(load="mmnormalize")
template(name="peerjson" type="list" option.jsonf="on") {{
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
  constant(outname="cluster" value="bench" format="jsonf")
  property(outname="node" name="hostname" format="jsonf")
  property(outname="client_ip" name="$!client_ip" format="jsonf")
  property(outname="user" name="$!user" format="jsonf")
  property(outname="protocol" name="$!protocol" format="jsonf")
  property(outname="operation" name="$!operation" format="jsonf")
  property(outname="status" name="$!status" format="jsonf")
  property(outname="file_id" name="$!file_id" format="jsonf")
  property(outname="path" name="$!path" format="jsonf")
  property(outname="target_path" name="$!target_path" format="jsonf")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="peer")
ruleset(name="peer" queue.type="LinkedList" queue.size="50000" queue.dequeueBatchSize="1024") {{
  action(type="mmnormalize" rulebase="{tmp}/qumulo.rb")
  action(type="omfile" file="{out}" template="peerjson")
}}
"""


# ---------------------------------------------------------------- the shipped wiring, from the shipped files

# The wiring shipped before issue 11 (envelope version 1 with %uuid% and `set $.qab_uuid`), read
# from git so that the same run can measure it beside the current one.
BEFORE_REV = "62b50d2"
# The wiring of version 2 (mmsequence's number and `$.cluster` in `$.` variables), the last
# revision that shipped it, for the cost table's "version 2" row.
V2_REV = "801ef30"


def _read(rel, rev=None):
    if rev:
        return subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{rel}"], check=True, capture_output=True,
                              text=True).stdout
    return open(os.path.join(ROOT, rel)).read()


def before_available():
    return subprocess.run(["git", "-C", ROOT, "cat-file", "-e", f"{BEFORE_REV}^{{commit}}"],
                          capture_output=True).returncode == 0


def _strip_comments(text):
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))


def shipped_conf(tmp, ports, dests, variant=(), rev=None, dest_rel="rsyslog.d/20-dest-file.conf"):
    """rsyslog.conf for len(ports) clusters and `dests` destinations, built from the shipped
    files (of git revision `rev`, else of the work tree); `dests` is a list of binary command
    lines, each run by the action of `dest_rel` (the file destination's, or a broker's
    2x-dest-*.conf.example: brokers.py). `variant`: names of changes for the cost table (each a
    plain text edit of the shipped configuration, listed in VARIANTS)."""
    pkg = _strip_comments(_read("packaging/rsyslog/qumulo-audit-broker.conf", rev))
    pkg = re.sub(r"include\(file=[^)]*\)", "", pkg)
    modules = re.findall(r'^module\(load="(\w+)"', _read("rsyslog.d/10-modules.conf", rev), re.M)
    clusters_ex = _strip_comments(_read("rsyslog.d/30-clusters.conf.example", rev))
    m = re.search(r'ruleset\(name="qab_cluster_prod".*?\n\}\n', clusters_ex + "\n", re.S)
    cluster_rs = m.group(0)
    deliver = _strip_comments(_read("rsyslog.d/50-deliver.conf", rev))
    dest = _strip_comments(_read(dest_rel, rev))
    parts = [f'global(workDirectory="{tmp}/spool")', 'module(load="imtcp")']
    parts += [f'module(load="{m}")' for m in modules if m != "imtcp"]
    parts.append(pkg)
    calls = []
    for i, binary in enumerate(dests):
        d = re.sub(r'name="qab_dest_\w+"', f'name="qab_dest_file{i}"', dest)
        d = re.sub(r'name="qab-\w+"', f'name="qab-file{i}"', d)  # the action's name and queue.filename
        d = re.sub(r'binary="[^"]*"', f'binary="{binary}"', d)
        d = re.sub(r'output="[^"]*"', f'output="{tmp}/omprog-{i}.log"', d)
        d = re.sub(r'queue.spoolDirectory="[^"]*"', f'queue.spoolDirectory="{tmp}/queue"', d)
        parts.append(d)
        calls.append(f"    call qab_dest_file{i}")
    deliver = re.sub(r"^\s*call qab_dest_file\s*$", "\n".join(calls), deliver, flags=re.M)
    parts.append(deliver)
    for i, port in enumerate(ports):
        parts.append(cluster_rs.replace("qab_cluster_prod", f"qab_cluster_c{i}").replace('"prod"', f'"c{i}"'))
        parts.append(f'input(type="imtcp" name="qab-c{i}" address="127.0.0.1" port="{port}" ruleset="qab_cluster_c{i}")')
    conf = "\n".join(parts) + "\n"
    for v in variant:
        conf = VARIANTS[v][1](conf)
    return conf


def variant_rev(variant):
    """The git revision whose wiring the variants apply to (None: the work tree's). A variant
    marked "v1" needs the wiring of BEFORE_REV, one marked "v2" that of V2_REV; the others apply
    to any."""
    revs = {"v1": BEFORE_REV, "v2": V2_REV}
    return next((revs[VARIANTS[v][2]] for v in variant if VARIANTS[v][2] in revs), None)


def _queue_param(conf, key, value):
    """Sets an action queue parameter (in the destination's action) to value, or drops it (None)."""
    out = []
    for block in re.split(r"(?=ruleset\()", conf):
        if 'type="omprog"' in block:
            block = re.sub(rf'\s*queue\.{key}="[^"]*"', "", block)
            if value is not None:
                block = block.replace('queue.type="LinkedList"', f'queue.type="LinkedList" queue.{key}="{value}"', 1)
        out.append(block)
    return "".join(out)


def _template_string(conf, new):
    return re.sub(r'(template\(name="qab_envelope(?:_v3)?" type="string"\s+string=")(?:[^"\\]|\\.)*(")',
                  lambda m: m.group(1) + new + m.group(2), conf, count=1)


def _template_edit(conf, old, new):
    m = re.search(r'template\(name="qab_envelope(?:_v3)?".*?\)\n', conf, re.S)
    return conf[:m.start()] + m.group(0).replace(old, new) + conf[m.end():]


SET_UUID = r"\n\s*set \$\.qab_uuid = \$uuid;"
UUID_FILTER = r'\n\s*if \$uuid == "" then \{[^}]*\}'


# name: (what it changes, the edit, which wiring it applies to: "v1" = BEFORE_REV's, else the current)
VARIANTS = {
    "v1": ("envelope version 1 as shipped before (JSON, `%uuid%`, `set $.qab_uuid = $uuid;`)", lambda c: c, "v1"),
    "v1-no-set-uuid": ("version 1 without `set $.qab_uuid = $uuid;` (uuid made lazily by the action workers: races)",
                       lambda c: re.sub(SET_UUID, "", c), "v1"),
    "v1-no-uuid": ("version 1 without `%uuid%` and without the `set` (no uuid made at all)",
                   lambda c: _template_edit(re.sub(SET_UUID, "", c), "%uuid%", ""), "v1"),
    "v1-msg-raw": ("version 1 with the message not JSON-escaped (`%msg%` for `%msg:::json%`)",
                   lambda c: _template_edit(c, "%msg:::json%", "%msg%"), "v1"),
    "v1-no-time": ("version 1 without the time (`%timereported:::date-rfc3339,json%`)",
                   lambda c: re.sub(r"%timereported:::[^%]*%", "", c), "v1"),
    "v2": ("version 2 as shipped before (mmsequence's number and `$.cluster` in `$.` variables)", lambda c: c, "v2"),
    "no-uuid-filter": ("without the uuid filter before the action (uuid made lazily by the action workers: races; NOT for production)",
                       lambda c: re.sub(UUID_FILTER, "", c), None),
    "msg-only": ("template `%msg%\\n` only (no envelope, no uuid: the floor of any envelope)",
                 lambda c: _template_string(re.sub(UUID_FILTER, "", c), r"%msg%\n"), None),
    "no-cluster-queue": ("the cluster ruleset without its own queue (runs on the main queue's worker)",
                         lambda c: re.sub(r'(ruleset\(name="qab_cluster_c\d+")\s+queue\.[^{]*\{', r"\1) {", c), None),
    "no-da": ("the action queue in memory only (no `queue.filename`: not disk-assisted; NOT reliable)",
              lambda c: _queue_param(_queue_param(c, "filename", None), "saveOnShutdown", None), None),
    "queue-holds-burst": ("action queue.size 400000 / highWatermark 360000 (holds the whole burst in memory)",
                          lambda c: _queue_param(_queue_param(c, "size", "400000"), "highWatermark", "360000"), None),
    "batch128": ("queue.dequeueBatchSize=128 (action queue)", lambda c: _queue_param(c, "dequeueBatchSize", "128"), None),
    "batch1024": ("queue.dequeueBatchSize=1024 (action queue; the file destination ships 4096)",
                  lambda c: _queue_param(c, "dequeueBatchSize", "1024"), None),
    "workers1": ("queue.workerThreads=1 (one program instance)", lambda c: _queue_param(c, "workerThreads", "1"), None),
    "workers4": ("queue.workerThreads=4 (up to four instances)", lambda c: _queue_param(c, "workerThreads", "4"), None),
    "min-msgs-1000": ("queue.workerThreadMinimumMessages=1000 (the second instance at 1000 waiting events, as shipped "
                      "before; shipped: 10000, the lowest value without rsyslog's start-up warning)",
                      lambda c: _queue_param(c, "workerThreadMinimumMessages", "1000"), None),
}


def qab_toml(tmp, i, fsync):
    os.makedirs(f"{tmp}/journal{i}", exist_ok=True)
    path = f"{tmp}/qab{i}.toml"
    open(path, "w").write(
        f'[destination]\ntype = "file"\npath = "{tmp}/events{i}.ndjson"\nformat = "json"\n'
        f"fsync = {'true' if fsync else 'false'}\n"
        f'[dead_letter]\npath = "{tmp}/dead-letter{i}.ndjson"\n[journal]\ndir = "{tmp}/journal{i}"\n'
        "[stats]\ninterval_secs = 0\n")
    return path


# ---------------------------------------------------------------- correctness

def normalize(obj):
    """(node, client, user, protocol, operation, status, file id, path, target) of one output
    event, whatever the producer called its keys; absent = empty."""
    user = obj.get("user", "")
    if isinstance(user, dict):
        user = user.get("name", "")
    g = lambda k: "" if obj.get(k) is None else str(obj.get(k))
    return (g("node"), g("client_ip"), user or "", g("protocol"), g("operation"), g("status"), g("file_id"),
            g("path"), g("target_path"))


def check_outputs(paths, expect_path, copies):
    """Counts (good, wrong, missing, examples): every output line is compared with the input's
    fields; each destination (copies) must hold every event once."""
    want = collections.Counter()
    for line in open(expect_path):
        want[tuple(json.loads(line))] += copies
    good = wrong = 0
    examples = []
    ids = collections.Counter()
    for p in paths:
        try:
            f = open(p, "rb")
        except FileNotFoundError:
            continue
        for raw in f:
            try:
                obj = json.loads(raw)
                t = normalize(obj)
                if "id" in obj:
                    ids[(p, obj["id"])] += 1
            except (ValueError, AttributeError):
                t = None
            if t is not None and want.get(t, 0) > 0:
                want[t] -= 1
                good += 1
            else:
                wrong += 1
                if len(examples) < 2:
                    examples.append(raw.decode(errors="replace").strip()[:300])
    missing = sum(want.values())
    dup_ids = sum(c - 1 for c in ids.values() if c > 1)
    return good, wrong, missing, examples, dup_ids


# ---------------------------------------------------------------- one run

class Counter:
    def __init__(self, paths):
        self.paths = paths
        self.offs = {p: 0 for p in paths}
        self.n = 0

    def count(self):
        for p in self.paths:
            try:
                with open(p, "rb") as f:
                    f.seek(self.offs[p])
                    data = f.read()
            except FileNotFoundError:
                continue
            cut = data.rfind(b"\n") + 1
            self.n += data.count(b"\n", 0, cut)
            self.offs[p] += cut
        return self.n


def run(label, kind, wire, n, clusters=1, dests=1, program="qab", fsync=False, variant=(), keep=False,
        timeout=None, py=None, qab_bin=None):
    """One end-to-end run. kind: shipped | syslog-ng | mmnormalize. Returns a result dict."""
    import sys
    py = py or sys.executable
    tmp = tempfile.mkdtemp(prefix="qab-wiring-")
    os.makedirs(f"{tmp}/spool")
    os.makedirs(f"{tmp}/queue")
    ports = [free_port() for _ in range(clusters)]
    outs = []
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS")}
    if kind == "shipped":
        binaries = []
        for i in range(dests):
            out = f"{tmp}/events{i}.ndjson"
            outs.append(out)
            if program == "ack":
                binaries.append(f"{os.environ['ACK_BIN']} {out}")
            else:
                binaries.append(f"{qab_bin or os.environ['QAB_BIN']} omprog --config {qab_toml(tmp, i, fsync)}")
        conf = shipped_conf(tmp, ports, binaries, variant, rev=variant_rev(variant))
    elif kind == "mmnormalize":
        outs.append(f"{tmp}/events0.ndjson")
        open(f"{tmp}/qumulo.rb", "w").write(RULEBASE)
        conf = MMN_CONF.format(tmp=tmp, port=ports[0], out=outs[0])
    elif kind == "syslog-ng":
        outs.append(f"{tmp}/events0.ndjson")
        conf = SNG_CONF.format(port=ports[0], out=outs[0])
    else:
        raise ValueError(kind)
    if kind == "syslog-ng":
        (sng, sng_env, _), _ = syslog_ng()
        open(f"{tmp}/syslog-ng.conf", "w").write(conf)
        argv = [sng, "-F", "--no-caps", "-f", f"{tmp}/syslog-ng.conf", f"--module-path={SNG_DIR}/usr/lib/syslog-ng/3.38",
                "-R", f"{tmp}/persist", "-p", f"{tmp}/pid", "-c", f"{tmp}/ctl"]
        env = {**sng_env, **{k: v for k, v in env.items() if k != "LD_LIBRARY_PATH"}}
    else:
        open(f"{tmp}/rsyslog.conf", "w").write(conf)
        chk = subprocess.run(["rsyslogd", "-N1", "-f", f"{tmp}/rsyslog.conf"], capture_output=True, text=True)
        if chk.returncode != 0:
            raise SystemExit(f"rsyslogd -N1 failed for {label}:\n{chk.stdout}{chk.stderr}\n(config in {tmp})")
        argv = ["rsyslogd", "-n", "-C", "-f", f"{tmp}/rsyslog.conf", "-i", f"{tmp}/rsyslogd.pid"]
    d = subprocess.Popen(argv, stdout=open(f"{tmp}/daemon.out", "w"), stderr=subprocess.STDOUT, env=env)
    counter = Counter(outs)
    want = n * (dests if kind == "shipped" else 1)
    spill = 0
    try:
        if not wait_ports(ports):
            raise SystemExit(f"{kind} did not listen; see {tmp}")
        time.sleep(0.5)
        load_before = load_str()
        cpu0 = proc_stat(d.pid)[1]
        sender = subprocess.Popen([py, f"{HERE}/sender.py", ",".join(map(str, ports)), wire], stdout=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        timeout = timeout or 60 + n / 2000
        kids = {}
        last_scan = 0.0
        # The largest sum of the resident sizes of the daemon and the children alive at the same
        # moment (sampled with the spill): instances that rsyslog starts one after another as
        # its queue switches modes never hold memory together, so the sum of their peaks
        # (prog_hwm_kib) overstates what the machine needs.
        rss_peak = 0
        got = 0
        t_done = None
        while True:
            now = time.monotonic()
            got = counter.count()
            if got >= want:
                t_done = now
                break
            if now - t0 > timeout:
                break
            if now - last_scan > 0.05:
                last_scan = now
                spill = max(spill, dir_bytes(f"{tmp}/queue"))
                rss_now = proc_status(d.pid, "VmRSS")
                for pid in children_of(d.pid):
                    st = proc_stat(pid)
                    if st:
                        kids[pid] = (st[1], proc_status(pid, "VmHWM"))
                        rss_now += proc_status(pid, "VmRSS")
                rss_peak = max(rss_peak, rss_now)
            time.sleep(0.002)
        daemon_cpu = proc_stat(d.pid)[1] - cpu0
        daemon_hwm = proc_status(d.pid, "VmHWM")
        for pid in set(children_of(d.pid)) | set(kids):
            st = proc_stat(pid)
            if st and st[0] == d.pid:
                kids[pid] = (st[1], proc_status(pid, "VmHWM"))
        sout = sender.communicate(timeout=120)[0]
        m = re.search(r"first_byte=([\d.]+)", sout or "")
        first = float(m.group(1)) if m else t0
        load_after = load_str()
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(timeout=30)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
    elapsed = (t_done or time.monotonic()) - first
    good, wrong, missing, examples, dup_ids = check_outputs(outs, wire + ".expect", dests if kind == "shipped" else 1)
    kid_cpu = sum(k[0] for k in kids.values())
    kid_hwm = sum(k[1] for k in kids.values())
    res = dict(label=label, kind=kind, program=program, n=n, events=want, clusters=clusters, dests=dests,
               fsync=fsync, variant=list(variant), wiring=next((VARIANTS[v][2] for v in variant if VARIANTS[v][2]), "v3"), done=t_done is not None, delivered=got, seconds=elapsed,
               msgs_per_s=(n if t_done else got / max(dests, 1)) / elapsed,
               daemon_cpu_s=daemon_cpu, prog_cpu_s=kid_cpu, instances=len(kids),
               daemon_cpu_per_M=daemon_cpu / n * 1e6, prog_cpu_per_M=kid_cpu / n * 1e6,
               total_cpu_per_M=(daemon_cpu + kid_cpu) / n * 1e6,
               cpu_per_M_events=(daemon_cpu + kid_cpu) / want * 1e6,
               daemon_hwm_kib=daemon_hwm, prog_hwm_kib=kid_hwm, rss_peak_kib=max(rss_peak, daemon_hwm), spill_bytes=spill,
               good=good, wrong=wrong, missing=missing, wrong_examples=examples, duplicate_ids=dup_ids,
               load_before=load_before, load_after=load_after)
    status = "" if t_done else f"  TIMEOUT: {got}/{want}"
    log(f"wiring {label:44} {res['msgs_per_s']:>9,.0f} msg/s  cpu/M {res['daemon_cpu_per_M']:5.1f}+{res['prog_cpu_per_M']:4.1f}"
        f"={res['total_cpu_per_M']:5.1f}  inst={len(kids)}  rss {daemon_hwm / 1024:.0f}+{kid_hwm / 1024:.0f} MiB  "
        f"spill {spill / 1e6:.1f} MB  wrong={wrong} missing={missing} dup_ids={dup_ids}  ({load_after}){status}")
    if keep or os.environ.get("KEEP") == "1":
        res["tmp"] = tmp
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def replace_md_section(md_path, begin, end, lines, after=None):
    """Replaces the text from `begin` to `end` in the Markdown file with `lines` (which carry the
    markers themselves); when the markers are missing, inserts it right after the marker `after`
    (if present), else before "## Plot", else at the end. Used by the parts of BENCHMARKS.md that
    their own commands rewrite (sections 7 and 8)."""
    text = open(md_path).read()
    new = "\n".join(lines)
    if begin in text and end in text:
        a, b = text.index(begin), text.index(end) + len(end)
        text = text[:a] + new + text[b:]
    elif after and after in text:
        i = text.index(after) + len(after)
        text = text[:i] + "\n\n" + new + text[i:]
    elif "\n## Plot" in text:
        i = text.index("\n## Plot") + 1
        text = text[:i] + new + "\n\n" + text[i:]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    open(md_path, "w").write(text)
