"""The broker destinations side by side with the file destination (bench.py calls it; section 7).

Each row runs rsyslogd with the shipped wiring (`wiring.shipped_conf`: the shipped template,
cluster ruleset and `qab_deliver`) and ONE destination action taken from the shipped file for
its kind: `rsyslog.d/20-dest-file.conf` (file), `25-dest-amqp.conf.example` (amqp),
`26-dest-kafka.conf.example` (kafka), only paths and ports replaced, running our release binary.
The same input (`gen.py qcsv`) is sent over TCP; a row is done when the destination holds every
event:

* file: lines in the output file (and each checked against the input, as in section 2);
* amqp: a local RabbitMQ node (Debian's rabbitmq-server, started from a temp dir like
  tests/support/rabbitmq.rs); the message count of the durable quorum queue bound to the
  exchange, read with a passive `queue.declare` by the minimal AMQP client below (stdlib only);
* kafka: a local `tansu` broker (memory storage; `cargo install tansu --locked --features
  dynostore`), topic with 3 partitions; the records read back as they arrive (kafka-python,
  every partition), each checked against the input at the end.

CPU per million events is shown for rsyslogd, our program (all its instances) and the broker
(its whole process tree, from the first byte to the last event), the broker separately. A peer
that is missing (no rabbitmq-server, no tansu, no kafka-python) is named, not failed.
"""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import wiring

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
DEST_FILES = {"file": "rsyslog.d/20-dest-file.conf", "amqp": "rsyslog.d/25-dest-amqp.conf.example",
              "kafka": "rsyslog.d/26-dest-kafka.conf.example"}


def log(*a):
    wiring.log(*a)


def tree_cpu(pid):
    """utime+stime of pid and all its descendants (seconds)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        st = wiring.proc_stat(p)
        if st:
            total += st[1]
        todo.extend(wiring.children_of(p))
    return total


# ---------------------------------------------------------------- RabbitMQ

class Amqp:
    """The smallest AMQP 0-9-1 client that answers one question: how many messages are in a queue
    (passive queue.declare -> declare-ok's message-count). guest/guest, vhost "/"."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 5)
        self.s.sendall(b"AMQP\x00\x00\x09\x01")
        self._expect(0, 10, 10)  # connection.start
        resp = b"\x00guest\x00guest"
        self._method(0, 10, 11, struct.pack(">I", 0) + self._short(b"PLAIN") + struct.pack(">I", len(resp)) + resp + self._short(b"en_US"))
        tune = self._expect(0, 10, 30)
        channel_max, frame_max, _ = struct.unpack(">HIH", tune[:8])
        self._method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))
        self._method(0, 10, 40, self._short(b"/") + self._short(b"") + b"\x00")
        self._expect(0, 10, 41)
        self._method(1, 20, 10, self._short(b""))
        self._expect(1, 20, 11)

    @staticmethod
    def _short(b):
        return bytes([len(b)]) + b

    def _method(self, ch, cls, meth, args):
        payload = struct.pack(">HH", cls, meth) + args
        self.s.sendall(struct.pack(">BHI", 1, ch, len(payload)) + payload + b"\xce")

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise OSError("AMQP connection closed")
            buf += chunk
        return buf

    def _expect(self, ch, cls, meth):
        while True:
            ftype, fch, size = struct.unpack(">BHI", self._read(7))
            payload = self._read(size + 1)[:-1]
            if ftype != 1:
                continue  # heartbeat
            c, m = struct.unpack(">HH", payload[:4])
            if (fch, c, m) == (ch, cls, meth):
                return payload[4:]
            raise OSError(f"AMQP: expected {cls}.{meth}, got {c}.{m}: {payload[4:80]!r}")

    def messages(self, queue):
        self._method(1, 50, 10, struct.pack(">H", 0) + self._short(queue.encode()) + b"\x01" + struct.pack(">I", 0))
        ok = self._expect(1, 50, 11)
        n = ok[0]
        return struct.unpack(">II", ok[1 + n:9 + n])[0]

    def close(self):
        self.s.close()


class Rabbit:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="qab-bench-rabbit-")
        self.node = f"qabbench-{os.getpid()}@localhost"
        self.port, self.dist, self.epmd = wiring.free_port(), wiring.free_port(), wiring.free_port()
        open(f"{self.dir}/rabbitmq.conf", "w").write(f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n")
        open(f"{self.dir}/enabled_plugins", "w").write("[].\n")
        open(f"{self.dir}/rabbitmq-env.conf", "w").write("")
        d = self.dir
        self.env = dict(os.environ, HOME=d, RABBITMQ_MNESIA_BASE=f"{d}/mnesia", RABBITMQ_LOG_BASE=f"{d}/log",
                        RABBITMQ_NODENAME=self.node, RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(self.dist),
                        RABBITMQ_CONFIG_FILE=f"{d}/rabbitmq.conf", RABBITMQ_ADVANCED_CONFIG_FILE=f"{d}/advanced.config",
                        RABBITMQ_ENABLED_PLUGINS_FILE=f"{d}/enabled_plugins", RABBITMQ_CONF_ENV_FILE=f"{d}/rabbitmq-env.conf",
                        ERL_EPMD_PORT=str(self.epmd))
        self.p = subprocess.Popen([RABBIT], env=self.env, cwd=d, stdin=subprocess.DEVNULL,
                                  stdout=open(f"{d}/server.out", "w"), stderr=subprocess.STDOUT)
        end = time.monotonic() + 120
        while subprocess.run([RABBITCTL, "-n", self.node, "await_startup", "--timeout", "60"], env=self.env,
                             capture_output=True).returncode != 0:
            if time.monotonic() > end:
                raise SystemExit(f"rabbitmq did not start; see {d}/server.out")
            time.sleep(0.5)

    def stop(self):
        subprocess.run([RABBITCTL, "-n", self.node, "stop"], env=self.env, capture_output=True)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
        subprocess.run(["epmd", "-port", str(self.epmd), "-kill"], env=self.env, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- Kafka (tansu)

def tansu_bin():
    return shutil.which("tansu") or next((p for p in [os.path.expanduser("~/.cargo/bin/tansu")] if os.path.exists(p)), None)


class Tansu:
    def __init__(self):
        self.port = wiring.free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="qab-bench-tansu-", suffix=".out", delete=False)
        self.p = subprocess.Popen([tansu_bin(), "broker", "--listener-url", self.url, "--advertised-listener-url", self.url,
                                   "--storage-engine", "memory://tansu/"], env=dict(os.environ, RUST_LOG="warn"),
                                  stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        if not wiring.wait_ports([self.port]):
            raise SystemExit(f"tansu did not listen; see {self.log.name}")

    def topic(self, name, partitions=3):
        subprocess.run([tansu_bin(), "topic", "create", name, "--partitions", str(partitions), "--broker", self.url],
                       check=True, capture_output=True)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
        if os.environ.get("KEEP") == "1":
            log(f"bench: kept {self.log.name}")
        else:
            os.unlink(self.log.name)


class KafkaCount:
    """Counts the topic's records by reading them (kafka-python, every partition from the
    beginning) and writes each value to `path`, one per line, to be checked against the input.
    Records are counted, not end offsets: tansu 0.6 under-reports end offsets (seen here: 1,001
    after 1,500 acknowledged records sent in 2 batches, all 1,500 readable; it looks like the last
    batch's base offset + 1)."""

    def __init__(self, bootstrap, topic, path):
        from kafka import KafkaConsumer, TopicPartition
        self.c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                               auto_offset_reset="earliest", fetch_max_wait_ms=10)
        tps = [TopicPartition(topic, p) for p in sorted(self.c.partitions_for_topic(topic) or [])]
        self.c.assign(tps)
        self.c.seek_to_beginning(*tps)
        self.out = open(path, "wb")
        self.n = 0

    def __call__(self):
        for msgs in self.c.poll(timeout_ms=20, max_records=100_000).values():
            for m in msgs:
                self.out.write(m.value + b"\n")
            self.n += len(msgs)
        return self.n

    def close(self):
        self.out.close()
        self.c.close()


# ---------------------------------------------------------------- one run

def missing_peers():
    out = []
    if not (os.path.exists(RABBIT) and os.path.exists(RABBITCTL)):
        out.append(("amqp", "rabbitmq-server is not installed (apt-get install rabbitmq-server)"))
    if not tansu_bin():
        out.append(("kafka", "tansu is not installed (cargo install tansu --locked --features dynostore)"))
    else:
        try:
            import kafka, lz4  # noqa: F401  (lz4: the records are lz4-compressed, the shipped default)
        except ImportError:
            out.append(("kafka", "kafka-python or lz4 is not installed (pip install 'kafka-python>=2.2,<3' lz4)"))
    return out


def dest_toml(tmp, kind, broker, fsync=False):
    common = (f'[dead_letter]\npath = "{tmp}/dead-letter.ndjson"\n[journal]\ndir = "{tmp}/journal"\n'
              "[stats]\ninterval_secs = 0\n")
    os.makedirs(f"{tmp}/journal", exist_ok=True)
    path = f"{tmp}/{kind}.toml"
    if kind == "amqp":
        body = (f'[destination]\ntype = "amqp"\nserver = "127.0.0.1"\nport = {broker.port}\nexchange = "qab-bench"\n'
                'declare_exchange = true\nqueue = "qab-bench"\nqueue_type = "quorum"\n')
    elif kind == "kafka":
        body = f'[destination]\ntype = "kafka"\nbootstrap_servers = ["127.0.0.1:{broker.port}"]\ntopic = "qab-bench"\n'
        body += os.environ.get("QAB_BENCH_KAFKA_EXTRA", "")
    else:
        body = f'[destination]\ntype = "file"\npath = "{tmp}/events0.ndjson"\nformat = "json"\nfsync = {"true" if fsync else "false"}\n'
    open(path, "w").write(body + common)
    return path


def run(label, kind, wire, n, py, fsync=False):
    """One end-to-end run of destination `kind` (file | file-fsync | amqp | kafka)."""
    tmp = tempfile.mkdtemp(prefix="qab-brokers-")
    os.makedirs(f"{tmp}/spool")
    os.makedirs(f"{tmp}/queue")
    base = "file" if kind.startswith("file") else kind
    broker = None
    if base == "amqp":
        broker = Rabbit()
    elif base == "kafka":
        broker = Tansu()
        broker.topic("qab-bench")
    port = wiring.free_port()
    cfg = dest_toml(tmp, base, broker, fsync=kind == "file-fsync")
    binary = f"{os.environ['QAB_BIN']} omprog --config {cfg}"
    conf = wiring.shipped_conf(tmp, [port], [binary], dest_rel=DEST_FILES[base])
    open(f"{tmp}/rsyslog.conf", "w").write(conf)
    chk = subprocess.run(["rsyslogd", "-N1", "-f", f"{tmp}/rsyslog.conf"], capture_output=True, text=True)
    if chk.returncode != 0:
        raise SystemExit(f"rsyslogd -N1 failed for {label}:\n{chk.stdout}{chk.stderr}\n(config in {tmp})")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS")}
    d = subprocess.Popen(["rsyslogd", "-n", "-C", "-f", f"{tmp}/rsyslog.conf", "-i", f"{tmp}/rsyslogd.pid"],
                         stdout=open(f"{tmp}/daemon.out", "w"), stderr=subprocess.STDOUT, env=env)
    consumer = None
    try:
        if base == "file":
            counter = wiring.Counter([f"{tmp}/events0.ndjson"]).count
        elif base == "amqp":
            amqp = Amqp(broker.port)

            def counter():
                # The queue exists once our program connected (it declares it at connect): until
                # then the passive declare fails and closes the channel, so count 0 and reconnect.
                nonlocal amqp
                try:
                    return amqp.messages("qab-bench")
                except OSError:
                    amqp.close()
                    amqp = Amqp(broker.port)
                    return 0
        else:
            counter = consumer = KafkaCount(f"127.0.0.1:{broker.port}", "qab-bench", f"{tmp}/events0.ndjson")
        if not wiring.wait_ports([port]):
            raise SystemExit(f"rsyslogd did not listen; see {tmp}")
        time.sleep(0.5)
        cpu0 = wiring.proc_stat(d.pid)[1]
        bcpu0 = tree_cpu(broker.p.pid) if broker else 0.0
        load_before = wiring.load_str()
        sender = subprocess.Popen([py, f"{HERE}/sender.py", str(port), wire], stdout=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        timeout = 120 + n / 1000
        kids, got, t_done, last = {}, 0, None, 0.0
        while True:
            now = time.monotonic()
            if now - last > 0.05:
                last = now
                got = counter()
                for pid in wiring.children_of(d.pid):
                    st = wiring.proc_stat(pid)
                    if st:
                        kids[pid] = st[1]
                if got >= n:
                    t_done = now
                    break
            if now - t0 > timeout:
                break
            time.sleep(0.01)
        daemon_cpu = wiring.proc_stat(d.pid)[1] - cpu0
        broker_cpu = (tree_cpu(broker.p.pid) - bcpu0) if broker else 0.0
        for pid in wiring.children_of(d.pid):
            st = wiring.proc_stat(pid)
            if st:
                kids[pid] = st[1]
        sout = sender.communicate(timeout=120)[0]
        m = re.search(r"first_byte=([\d.]+)", sout or "")
        first = float(m.group(1)) if m else t0
        load_after = wiring.load_str()
        time.sleep(0.5)
        extra = counter() - n if t_done else 0
        check_path = f"{tmp}/events0.ndjson"
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(timeout=30)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
        if consumer is not None:
            consumer.close()
        if broker:
            broker.stop()
    elapsed = (t_done or time.monotonic()) - first
    if base in ("file", "kafka"):
        good, wrong, missing, _, dup_ids = wiring.check_outputs([check_path], wire + ".expect", 1)
        checked = "every event compared with the input"
    else:
        good, wrong, missing, dup_ids = got, 0, max(0, n - got), max(0, extra)
        checked = "message count of the queue"
    prog_cpu = sum(kids.values())
    res = dict(label=label, kind=kind, n=n, done=t_done is not None, seconds=elapsed, msgs_per_s=(n if t_done else got) / elapsed,
               daemon_cpu_per_M=daemon_cpu / n * 1e6, prog_cpu_per_M=prog_cpu / n * 1e6, broker_cpu_per_M=broker_cpu / n * 1e6,
               total_cpu_per_M=(daemon_cpu + prog_cpu) / n * 1e6, instances=len(kids), extra_records=extra,
               good=good, wrong=wrong, missing=missing, duplicate_ids=dup_ids, checked=checked,
               load_before=load_before, load_after=load_after)
    log(f"brokers {label:28} {res['msgs_per_s']:>9,.0f} msg/s  cpu/M rsyslogd {res['daemon_cpu_per_M']:5.1f} + ours "
        f"{res['prog_cpu_per_M']:5.1f} = {res['total_cpu_per_M']:5.1f}, broker {res['broker_cpu_per_M']:5.1f}  "
        f"good={good} wrong={wrong} missing={missing} extra={extra}  ({load_after})"
        + ("" if t_done else f"  TIMEOUT {got}/{n}"))
    if os.environ.get("KEEP") == "1":
        res["tmp"] = tmp
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def bench(wire, n, rounds, py):
    """Every destination kind in interleaved rounds; medians per kind."""
    out = dict(missing=[], n=n, rounds=rounds)
    binary = os.environ["QAB_BIN"]
    kind = subprocess.run(["file", "-b", binary], capture_output=True, text=True).stdout
    linked = "static-pie linked" if "static-pie" in kind else ("statically linked" if "statically" in kind else "dynamically linked")
    out["binary"] = f"{os.path.relpath(binary, ROOT)} ({linked})"
    kinds = ["file", "file-fsync", "amqp", "kafka"]
    for kind, why in missing_peers():
        out["missing"].append(f"{kind}: {why}")
        log(f"bench: brokers: {kind}: {why}")
        if kind in kinds:
            kinds.remove(kind)
    runs = {k: [] for k in kinds}
    for rnd in range(rounds):
        for kind in kinds:
            runs[kind].append(run(f"{kind} (round {rnd + 1})", kind, wire, n, py))
    rows = {}
    for kind, rs in runs.items():
        r = dict(rs[0])
        for k in ("msgs_per_s", "daemon_cpu_per_M", "prog_cpu_per_M", "broker_cpu_per_M", "total_cpu_per_M", "seconds"):
            r[k] = sorted(x[k] for x in rs)[len(rs) // 2]
        for k in ("wrong", "missing", "duplicate_ids", "extra_records"):
            r[k] = max(x[k] for x in rs)
        r["done"] = all(x["done"] for x in rs)
        r["rounds"] = [dict(msgs_per_s=x["msgs_per_s"], load=x["load_after"]) for x in rs]
        rows[kind] = r
    out["rows"] = rows
    return out


# ---------------------------------------------------------------- report

BEGIN, END = "<!-- brokers: begin (bench/brokers.py) -->", "<!-- brokers: end -->"
NAMES = {"file": "file, fsync off (`20-dest-file.conf`)", "file-fsync": "file, fsync on (shipped default)",
         "amqp": "RabbitMQ 3.10 quorum queue (`25-dest-amqp.conf.example`)",
         "kafka": "Kafka: tansu 0.6, memory storage (`26-dest-kafka.conf.example`)"}


def section(B, quick, when, command):
    """The markdown of section 7, between markers (so a `bench/run.sh brokers` run can replace it)."""
    f = lambda x: f"{x:,.0f}"
    L = [BEGIN, "## 7. Broker destinations beside the file destination", ""]
    L.append(f"{'**QUICK figures** (smoke run; ' if quick else '('}{B['n']:,} events per row, {B['rounds']} "
             f"round(s), rows interleaved; {when}; `{command}`). The shipped wiring with ONE destination action, taken from the "
             "shipped file for its kind, running our release binary; the broker runs on this machine too. A row is done when "
             "the destination holds every event. CPU is seconds per million events: rsyslogd and our program (every "
             "instance) as in section 2, the broker's whole process tree separately (it is not part of what we ship, but it "
             "shares the two cores); /proc counts CPU in 10 ms ticks, so a figure is good to about "
             f"{0.01 / B['n'] * 1e6:.1f} s per million. Binary: `{B.get('binary', '?')}`.")
    L.append("")
    rows = B.get("rows", {})
    file_row = rows.get("file")
    hdr = ["destination", "msg/s", "vs file", "CPU rsyslogd", "CPU ours", "CPU rsyslogd + ours", "vs file",
           "CPU broker", "checked", "wrong", "missing", "duplicates", "load after"]
    body = []
    for kind in ("file", "file-fsync", "amqp", "kafka"):
        r = rows.get(kind)
        if not r:
            continue
        vs = lambda k: f"{r[k] / file_row[k]:.2f}x" if file_row and file_row[k] else "-"
        rate = f(r["msgs_per_s"]) + (" (" + ", ".join(f(x["msgs_per_s"]) for x in r["rounds"]) + ")" if len(r["rounds"]) > 1 else "")
        body.append([NAMES[kind], rate + ("" if r["done"] else " **TIMEOUT**"), vs("msgs_per_s"), f"{r['daemon_cpu_per_M']:.1f}",
                     f"{r['prog_cpu_per_M']:.1f}", f"{r['total_cpu_per_M']:.1f}", vs("total_cpu_per_M"),
                     f"{r['broker_cpu_per_M']:.1f}" if kind in ("amqp", "kafka") else "-", r["checked"], f"{r['wrong']:,}",
                     f"{r['missing']:,}", f"{max(r['duplicate_ids'], r['extra_records']):,}", r["load_after"].replace("load ", "")])
    L.append("| " + " | ".join(hdr) + " |")
    L.append("| " + " | ".join("---" for _ in hdr) + " |")
    L += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    L.append("")
    for m in B.get("missing", []):
        L.append(f"Not measured: {m}.")
        L.append("")
    L.append("\"vs file\" compares with the first row (same run). The broker rows deliver over TCP with the broker's "
             "acknowledgement (publisher confirms; `acks=all` delivery reports) before each COMMIT is answered; the file row "
             "with fsync off only writes. tansu keeps records in memory (no disk), RabbitMQ's quorum queue writes and fsyncs "
             "its log (and routes, confirms and counts every message): their broker CPU is not comparable with each other's "
             "or with a production cluster's. What compares is our side: the CPU of rsyslogd plus our program per event, "
             "and the rate one instance pair sustains while it waits for acknowledgements.")
    L += ["", END]
    return L


def update_md(md_path, lines):
    """Replaces section 7 in BENCHMARKS.md (or inserts it before "## Plot")."""
    wiring.replace_md_section(md_path, BEGIN, END, lines)
