"""Scaling past one host (docs/scaling.md): throughput and CPU per event of the receiver tier and
of 1, 2 and 4 `consume` processes, on this machine.

    QAB_BIN=target/release/qumulo-audit-broker python3 bench/scale.py [N]   # default N = 200,000

1. Receiver tier: rsyslogd with the shipped wiring (`wiring.shipped_conf`) and the receiver
   action of `rsyslog.d/27-dest-kafka-receiver.conf.example` (paths and ports replaced), its
   `kafka` destination in pass-through mode, into a local `tansu` (memory storage) topic with 4
   partitions; the input (`gen.py qcsv`, N events) is spread over 4 clusters on 4 TCP
   inputs (one per partition). Done when a reader beside it (kafka-python) has read N records;
   then the N envelopes are checked distinct. CPU: rsyslogd, our program (all instances) and
   tansu, from the first byte to the last record.
2. Processing tier: the topic copied (untimed) one record per record batch (tansu's fetch defect:
   see `copy_one_per_batch`); for k = 1, 2, 4, k `consume` processes of a fresh consumer group read the
   whole topic (N envelopes) and deliver to one file destination (JSON, no fsync); done when
   the file holds N lines. CPU: the k consumers (utime+stime) and tansu. The lines are counted,
   then every event id is checked present once. The rate is also taken over the window in
   which every consumer holds partitions (after the group's rebalance), the figure that shows
   how consumers add up.

BROKER=amqp: the same two tiers on RabbitMQ (a local node, `brokers.Rabbit`): the receiver action
of `rsyslog.d/28-dest-amqp-receiver.conf.example`, its `amqp` destination in pass-through mode
declaring a durable quorum queue (done when the queue holds N ready messages); then k = 1, 2
`consume` processes (`[source] type = "amqp"`, prefetch 2000) drain it into one file destination.
The queue is filled again by the receiver before each k (so the receiver row is measured twice).

Prints one JSON object per row and a Markdown table for BENCHMARKS.md. The machine has 2 cores
shared with other work: the load average is printed with each row.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
import wiring  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.environ.get("QAB_BIN", os.path.join(ROOT, "target/release/qumulo-audit-broker"))
CLUSTERS = ["cl0", "cl4", "cl1", "cl5"]  # crc32 % 4 = 0, 1, 2, 3: one partition each
TOPIC = "qab-envelopes"


def gen(n, path):
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), "qcsv", str(n), path], check=True)
    return path


def receiver_conf(tmp, ports, cfg):
    """rsyslog.conf from the shipped files (`wiring.shipped_conf`) with the receiver action of
    27-dest-kafka-receiver.conf.example; the four clusters renamed so they hash to four partitions."""
    conf = wiring.shipped_conf(tmp, ports, [f"{BIN} omprog --config {cfg}"], dest_rel="rsyslog.d/27-dest-kafka-receiver.conf.example")
    for i, c in enumerate(CLUSTERS):
        conf = conf.replace(f'"c{i}"', f'"{c}"')
    return conf


def receiver(tansu, n, data, tmp):
    os.makedirs(f"{tmp}/queue", exist_ok=True)
    os.makedirs(f"{tmp}/spool", exist_ok=True)
    cfg = f"{tmp}/kafka-receiver.toml"
    open(cfg, "w").write(
        f'[destination]\ntype = "kafka"\npass_through = true\nbootstrap_servers = ["127.0.0.1:{tansu.port}"]\ntopic = "{TOPIC}"\n'
        f'[dead_letter]\npath = "{tmp}/dead-letter.ndjson"\n[journal]\ndir = "{tmp}/journal"\n[stats]\ninterval_secs = 0\n')
    ports = [wiring.free_port() for _ in CLUSTERS]
    open(f"{tmp}/rsyslog.conf", "w").write(receiver_conf(tmp, ports, cfg))
    chk = subprocess.run(["rsyslogd", "-N1", "-f", f"{tmp}/rsyslog.conf"], capture_output=True, text=True)
    if chk.returncode != 0:
        raise SystemExit(f"rsyslogd -N1:\n{chk.stdout}{chk.stderr}\n(config in {tmp})")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS")}
    d = subprocess.Popen(["rsyslogd", "-n", "-C", "-f", f"{tmp}/rsyslog.conf", "-i", f"{tmp}/rsyslogd.pid"],
                         stdout=open(f"{tmp}/daemon.out", "w"), stderr=subprocess.STDOUT, env=env)
    # Counted by reading the records (brokers.KafkaCount), not from end offsets: tansu 0.6
    # under-reports those (bench/brokers.py). The reader runs beside the pipeline and shares
    # the cores with it, as in section 7.
    consumer = counter = brokers.KafkaCount(f"127.0.0.1:{tansu.port}", TOPIC, f"{tmp}/receiver-topic.txt")
    try:
        if not wiring.wait_ports(ports):
            raise SystemExit(f"rsyslogd did not listen; see {tmp}")
        time.sleep(0.5)
        cpu0, bcpu0 = wiring.proc_stat(d.pid)[1], brokers.tree_cpu(tansu.p.pid)
        t0 = time.monotonic()
        senders = [subprocess.Popen([sys.executable, f"{HERE}/sender.py", ",".join(map(str, ports)), data], stdout=subprocess.DEVNULL)]
        kids = {}
        while counter() < n:
            for pid in wiring.children_of(d.pid):
                st = wiring.proc_stat(pid)
                if st:
                    kids[pid] = st[1]
            if time.monotonic() - t0 > 300:
                raise SystemExit(f"receiver: {counter()} of {n} after 300 s; see {tmp}")
            time.sleep(0.05)
        secs = time.monotonic() - t0
        for pid in wiring.children_of(d.pid):
            st = wiring.proc_stat(pid)
            if st:
                kids[pid] = st[1]
        dcpu, bcpu = wiring.proc_stat(d.pid)[1] - cpu0, brokers.tree_cpu(tansu.p.pid) - bcpu0
        for s in senders:
            s.wait(timeout=60)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=30)
        consumer.close()
    with open(f"{tmp}/receiver-topic.txt", "rb") as f:
        distinct = len(set(f.read().splitlines()))
    if distinct != n:
        raise SystemExit(f"receiver: the topic holds {distinct:,} distinct envelopes, not {n:,}; see {tmp}")
    return dict(row="receiver", n=n, seconds=secs, per_s=n / secs, rsyslogd_cpu_us=dcpu / n * 1e6,
                ours_cpu_us=sum(kids.values()) / n * 1e6, broker_cpu_us=bcpu / n * 1e6, load=wiring.load_str())


def copy_one_per_batch(tansu, n, dst):
    """Copies the receiver's topic into `dst`, one record per record batch (kafka-python, batch_size
    1): tansu 0.6.0 answers a fetch from inside a stored batch with the next batch, which stalls
    a consumer that resumes from a commit made mid-batch after a rebalance (src/consume.rs
    `Expected`; tests/scale.rs). Apache Kafka does not need this; untimed."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    tansu.topic(dst, 4)
    c = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{tansu.port}", enable_auto_commit=False, group_id=None)
    p = KafkaProducer(bootstrap_servers=f"127.0.0.1:{tansu.port}", batch_size=1, linger_ms=0)
    tps = [TopicPartition(TOPIC, i) for i in range(4)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    end, copied = c.end_offsets(tps), 0
    while any(c.position(tp) < end[tp] for tp in tps):
        for tp, msgs in c.poll(timeout_ms=500, max_records=5000).items():
            for m in msgs:
                p.send(dst, value=m.value, key=m.key, partition=tp.partition, headers=m.headers)
                copied += 1
    p.flush()
    c.close()
    p.close()
    assert copied == n, (copied, n)


def produce_envelopes(tansu, data, n, dst):
    """Writes N version-2 envelope lines (as the receiver forwards them: docs/event-schema.md) of
    the input's messages into `dst`, event k to cluster k % 4 (one partition each), one record
    per batch (see copy_one_per_batch); untimed."""
    from kafka import KafkaProducer
    tansu.topic(dst, 4)
    p = KafkaProducer(bootstrap_servers=f"127.0.0.1:{tansu.port}", batch_size=1, linger_ms=0)
    with open(data, "rb") as f:
        for k, line in enumerate(f):
            msg = line.rstrip(b"\n").split(b" qumulo", 1)[1]
            host = line.split(b" ")[3]
            env = b"QAB2\t2026-06-06T14:52:00+00:00/%d\t\t2026-06-06T14:52:00+00:00\t%s\t127.0.0.1\t%s\t%s" % (
                k, CLUSTERS[k % 4].encode(), host, msg)
            p.send(dst, value=env, key=CLUSTERS[k % 4].encode(), partition=k % 4)
    p.flush()
    p.close()


def assigned(log_path):
    """The partitions a consumer holds now, from its log (`consume: partitions assigned: ...` and
    `... revoked: ...`, src/consume.rs)."""
    held = set()
    try:
        text = open(log_path, errors="replace").read()
    except OSError:
        return held
    for m in re.finditer(r"consume: partitions (assigned|revoked): (.*)", text):
        parts = set(re.findall(r"\d+", m.group(2)))
        held = held | parts if m.group(1) == "assigned" else held - parts
    return held


def consumers(tansu, k, n, tmp, topic):
    """k consumers of a fresh group read the whole topic. Besides the whole run, the rate is taken
    over the window in which every consumer holds partitions (all joined, the group's rebalance
    done): the first consumer to join takes every partition and drains alone until the others'
    rebalance completes (about 2 s with tansu), which the whole-run rate mixes in."""
    out = f"{tmp}/out-{k}.ndjson"
    procs, logs = [], []
    for i in range(k):
        cfg = f"{tmp}/consume-{k}-{i}.toml"
        open(cfg, "w").write(
            f'[source]\nbootstrap_servers = ["127.0.0.1:{tansu.port}"]\ntopic = "{topic}"\ngroup_id = "bench-{k}"\n'
            f'[destination]\ntype = "file"\npath = "{out}"\nformat = "json"\n[batch]\nmax_events = 1000\n'
            f'[dead_letter]\npath = "{tmp}/dead-{k}.ndjson"\n[journal]\nenabled = false\n[stats]\ninterval_secs = 0\n')
        logs.append(f"{tmp}/consume-{k}-{i}.log")
        procs.append(subprocess.Popen([BIN, "consume", "--config", cfg], stdout=open(logs[-1], "w"), stderr=subprocess.STDOUT))
    bcpu0 = brokers.tree_cpu(tansu.p.pid)
    t0 = time.monotonic()
    cpu = {}
    count = wiring.Counter([out]).count
    stable = None  # (time, events in the file, consumers' CPU, broker CPU) when all held partitions
    last_check = 0.0
    while True:
        got = count()
        if got >= n:
            break
        now = time.monotonic()
        for p in procs:
            st = wiring.proc_stat(p.pid)
            if st:
                cpu[p.pid] = st[1]
        if stable is None and now - last_check > 0.1:
            last_check = now
            if all(assigned(lp) for lp in logs[:4]):
                stable = (now, got, sum(cpu.values()), brokers.tree_cpu(tansu.p.pid))
        if now - t0 > 600:
            raise SystemExit(f"{k} consumers: {got} of {n} after 600 s; see {tmp}")
        time.sleep(0.05)
    t_end = time.monotonic()
    secs = t_end - t0
    for p in procs:
        st = wiring.proc_stat(p.pid)
        if st:
            cpu[p.pid] = st[1]
    bcpu_end = brokers.tree_cpu(tansu.p.pid)
    bcpu = bcpu_end - bcpu0
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)
    delivered = []
    for lp in logs:
        m = re.findall(r"stats: lines_in=\d+ events=\d+ delivered=(\d+)", open(lp, errors="replace").read())
        delivered.append(int(m[-1]) if m else None)
    nums = {}
    with open(out) as f:
        for line in f:
            key = json.loads(line).get("id")
            nums[key] = nums.get(key, 0) + 1
    dup = sum(c - 1 for c in nums.values())
    per_consumer = [round(c / n * 1e6, 2) for c in cpu.values()]
    row = dict(row=f"{k} consumer{'s' if k > 1 else ''}", n=n, seconds=secs, per_s=n / secs, consumers_cpu_us=sum(cpu.values()) / n * 1e6,
               per_consumer_cpu_us=per_consumer, per_consumer_delivered=delivered, broker_cpu_us=bcpu / n * 1e6,
               distinct=len(nums), duplicates=dup, load=wiring.load_str())
    if stable and n - stable[1] > 0:
        t_s, got_s, ccpu_s, bcpu_s = stable
        left = n - got_s
        row.update(stable_after_s=t_s - t0, stable_events=left, stable_per_s=left / (t_end - t_s),
                   stable_consumers_cpu_us=(sum(cpu.values()) - ccpu_s) / left * 1e6,
                   stable_broker_cpu_us=(bcpu_end - bcpu_s) / left * 1e6)
    return row


QUEUE = "qab-envelopes"


def amqp_count(port):
    """Ready messages in QUEUE (0 until the receiver declared it)."""
    try:
        c = brokers.Amqp(port)
        try:
            return c.messages(QUEUE)
        finally:
            c.close()
    except OSError:
        return 0


def amqp_receiver(rabbit, n, data, tmp, run):
    os.makedirs(f"{tmp}/queue", exist_ok=True)
    os.makedirs(f"{tmp}/spool", exist_ok=True)
    cfg = f"{tmp}/amqp-receiver.toml"
    open(cfg, "w").write(
        f'[destination]\ntype = "amqp"\npass_through = true\nserver = "127.0.0.1"\nport = {rabbit.port}\nexchange = "{QUEUE}"\n'
        f'routing_key = "qumulo.{{cluster}}"\ndeclare_exchange = true\nqueue = "{QUEUE}"\nqueue_type = "quorum"\n'
        f'[dead_letter]\npath = "{tmp}/dead-letter.ndjson"\n[journal]\ndir = "{tmp}/journal"\n[stats]\ninterval_secs = 0\n')
    ports = [wiring.free_port() for _ in CLUSTERS]
    conf = wiring.shipped_conf(f"{tmp}/r{run}", ports, [f"{BIN} omprog --config {cfg}"], dest_rel="rsyslog.d/28-dest-amqp-receiver.conf.example")
    os.makedirs(f"{tmp}/r{run}/spool", exist_ok=True)
    os.makedirs(f"{tmp}/r{run}/queue", exist_ok=True)
    open(f"{tmp}/rsyslog-{run}.conf", "w").write(conf)
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS")}
    d = subprocess.Popen(["rsyslogd", "-n", "-C", "-f", f"{tmp}/rsyslog-{run}.conf", "-i", f"{tmp}/rsyslogd-{run}.pid"],
                         stdout=open(f"{tmp}/daemon-{run}.out", "w"), stderr=subprocess.STDOUT, env=env)
    try:
        if not wiring.wait_ports(ports):
            raise SystemExit(f"rsyslogd did not listen; see {tmp}")
        time.sleep(0.5)
        cpu0, bcpu0 = wiring.proc_stat(d.pid)[1], brokers.tree_cpu(rabbit.p.pid)
        t0 = time.monotonic()
        sender = subprocess.Popen([sys.executable, f"{HERE}/sender.py", ",".join(map(str, ports)), data], stdout=subprocess.DEVNULL)
        kids = {}
        while amqp_count(rabbit.port) < n:
            for pid in wiring.children_of(d.pid):
                st = wiring.proc_stat(pid)
                if st:
                    kids[pid] = st[1]
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"amqp receiver: {amqp_count(rabbit.port)} of {n} after 600 s; see {tmp}")
            time.sleep(0.2)
        secs = time.monotonic() - t0
        for pid in wiring.children_of(d.pid):
            st = wiring.proc_stat(pid)
            if st:
                kids[pid] = st[1]
        dcpu, bcpu = wiring.proc_stat(d.pid)[1] - cpu0, brokers.tree_cpu(rabbit.p.pid) - bcpu0
        sender.wait(timeout=60)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=30)
    return dict(row="amqp receiver", n=n, seconds=secs, per_s=n / secs, rsyslogd_cpu_us=dcpu / n * 1e6,
                ours_cpu_us=sum(kids.values()) / n * 1e6, broker_cpu_us=bcpu / n * 1e6, load=wiring.load_str())


def amqp_consumers(rabbit, k, n, tmp):
    out = f"{tmp}/amqp-out-{k}.ndjson"
    procs = []
    for i in range(k):
        cfg = f"{tmp}/consume-amqp-{k}-{i}.toml"
        open(cfg, "w").write(
            f'[source]\ntype = "amqp"\nserver = "127.0.0.1"\nport = {rabbit.port}\nqueue = "{QUEUE}"\nprefetch = 2000\n'
            f'[destination]\ntype = "file"\npath = "{out}"\nformat = "json"\n[batch]\nmax_events = 1000\n'
            f'[dead_letter]\npath = "{tmp}/dead-amqp-{k}.ndjson"\n[journal]\nenabled = false\n[stats]\ninterval_secs = 0\n')
        log = open(f"{tmp}/consume-amqp-{k}-{i}.log", "w")
        procs.append(subprocess.Popen([BIN, "consume", "--config", cfg], stdout=log, stderr=subprocess.STDOUT))
    bcpu0 = brokers.tree_cpu(rabbit.p.pid)
    t0 = time.monotonic()
    cpu = {}
    count = wiring.Counter([out]).count
    while count() < n:
        for p in procs:
            st = wiring.proc_stat(p.pid)
            if st:
                cpu[p.pid] = st[1]
        if time.monotonic() - t0 > 600:
            raise SystemExit(f"{k} amqp consumers: {count()} of {n} after 600 s; see {tmp}")
        time.sleep(0.05)
    secs = time.monotonic() - t0
    for p in procs:
        st = wiring.proc_stat(p.pid)
        if st:
            cpu[p.pid] = st[1]
    bcpu = brokers.tree_cpu(rabbit.p.pid) - bcpu0
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)
    ids = {}
    with open(out) as f:
        for line in f:
            key = json.loads(line).get("id")
            ids[key] = ids.get(key, 0) + 1
    per_consumer = [round(c / n * 1e6, 2) for c in cpu.values()]
    return dict(row=f"{k} amqp consumer{'s' if k > 1 else ''}", n=n, seconds=secs, per_s=n / secs, consumers_cpu_us=sum(cpu.values()) / n * 1e6,
                per_consumer_cpu_us=per_consumer, broker_cpu_us=bcpu / n * 1e6, distinct=len(ids), duplicates=sum(c - 1 for c in ids.values()),
                load=wiring.load_str())


def main_amqp(n, data, date, load0):
    tmp = tempfile.mkdtemp(prefix="qab-scale-amqp-")
    rabbit = brokers.Rabbit()
    rows = []
    try:
        for k in (1, 2, 4):
            print(f"scale: amqp receiver tier, {n} events ({wiring.load_str()})", file=sys.stderr, flush=True)
            rows.append(amqp_receiver(rabbit, n, data, tmp, k))
            print(json.dumps(rows[-1]), flush=True)
            print(f"scale: {k} amqp consumers ({wiring.load_str()})", file=sys.stderr, flush=True)
            rows.append(amqp_consumers(rabbit, k, n, tmp))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        rabbit.stop()
    table(rows, broker="RabbitMQ")
    if os.environ.get("SCALE_WRITE") == "1":  # BROKER=amqp bench/run.sh scale
        update_amqp_md(os.path.join(ROOT, "BENCHMARKS.md"),
                       amqp_section(rows, n, os.environ.get("BENCH_COMMAND", f"BROKER=amqp bench/scale.py {n}"), date, load0))
        print("scale: the RabbitMQ part of section 8 of BENCHMARKS.md rewritten", file=sys.stderr)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    load0 = wiring.load_str().replace("load ", "")
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if os.environ.get("BROKER") == "amqp":
        os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
        main_amqp(n, gen(n, os.path.join(HERE, "data", f"qcsv-{n}.log")), date, load0)
        return
    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    data = gen(n, os.path.join(HERE, "data", f"qcsv-{n}.log"))
    tmp = tempfile.mkdtemp(prefix="qab-scale-")
    tansu = brokers.Tansu()
    tansu.topic(TOPIC, 4)
    rows = []
    if os.environ.get("CONSUMERS_ONLY") == "1":
        # The processing tier alone, from envelopes written straight into the topic.
        try:
            print("scale: writing the envelopes (untimed)", file=sys.stderr, flush=True)
            produce_envelopes(tansu, data, n, TOPIC + "-1")
            for k in (1, 2, 4):
                print(f"scale: {k} consumers ({wiring.load_str()})", file=sys.stderr, flush=True)
                rows.append(consumers(tansu, k, n, tmp, TOPIC + "-1"))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            tansu.stop()
        table(rows)
        return
    try:
        print(f"scale: receiver tier, {n} events ({wiring.load_str()})", file=sys.stderr, flush=True)
        rows.append(receiver(tansu, n, data, tmp))
        print(json.dumps(rows[-1]), flush=True)
        print("scale: copying the topic one record per batch (untimed)", file=sys.stderr, flush=True)
        copy_one_per_batch(tansu, n, TOPIC + "-1")
        for k in (1, 2, 4):
            print(f"scale: {k} consumers ({wiring.load_str()})", file=sys.stderr, flush=True)
            rows.append(consumers(tansu, k, n, tmp, TOPIC + "-1"))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        tansu.stop()
    table(rows)
    if os.environ.get("SCALE_WRITE") == "1":  # bench/run.sh scale
        update_md(os.path.join(ROOT, "BENCHMARKS.md"), section(rows, n, os.environ.get("BENCH_COMMAND", f"bench/scale.py {n}"), date, load0))
        print("scale: section 8 of BENCHMARKS.md rewritten", file=sys.stderr)


BEGIN, END = "<!-- scale: begin (bench/scale.py) -->", "<!-- scale: end -->"


def section(rows, n, command, date, load0):
    """Section 8 of BENCHMARKS.md, between BEGIN and END (a full `bench/run.sh` keeps it as it is:
    bench/report.py copies it over)."""
    L = [BEGIN, "## 8. Scaling past one host (issue 14): the receiver tier and the processing tier", ""]
    L.append(f"`{command}`, {date}, on this machine: {os.cpu_count()} cores, shared with other work (load {load0} at the "
             "start; each row shows the load after it). tansu 0.6.0 (memory storage) on loopback, one topic of 4 "
             f"partitions. **Receiver**: {n:,} Qumulo CSV lines (`gen.py qcsv`) on 4 TCP inputs of the shipped rsyslog "
             "wiring (4 clusters, one per partition), the receiver action of `27-dest-kafka-receiver.conf.example` "
             "(our `kafka` destination with `pass_through = true`: the envelope line is the record); done when a reader "
             "beside it has read every record back, then every envelope is checked present once. **Processing**: k "
             "`consume` processes of a fresh consumer group read a copy of that topic written one record per record batch (untimed: tansu answers a fetch from inside a batch with the next batch, which would stall a consumer after a rebalance) and deliver to one file destination "
             "(JSON, no fsync); done when the file holds every event; then every event `id` is counted. CPU is "
             "utime+stime from /proc (10 ms ticks), per event.")
    L.append("")
    L.append("| tier | events | seconds | events/s (whole run) | events/s (while every consumer holds partitions) "
             "| CPU µs/event, ours | CPU µs/event, rsyslogd | CPU µs/event, tansu | load after |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        ours = r.get("ours_cpu_us", r.get("consumers_cpu_us"))
        steady = (f"{r['stable_per_s']:,.0f} (after {r['stable_after_s']:.1f} s; {r['stable_events']:,} events; "
                  f"ours {r['stable_consumers_cpu_us']:.1f}, tansu {r['stable_broker_cpu_us']:.1f} µs/event)"
                  if "stable_per_s" in r else "-")
        rs = f"{r['rsyslogd_cpu_us']:.1f}" if "rsyslogd_cpu_us" in r else "-"
        L.append(f"| {r['row']} | {r['n']:,} | {r['seconds']:.1f} | {r['per_s']:,.0f} | {steady} | {ours:.1f} | {rs} | "
                 f"{r['broker_cpu_us']:.1f} | {r['load'].replace('load ', '')} |")
    L.append("")
    for r in rows:
        if "distinct" in r:
            L.append(f"* {r['row']}: {r['distinct']:,} distinct ids, {r['duplicates']} duplicates; events delivered per "
                     f"consumer {r['per_consumer_delivered']}; CPU µs/event per consumer {r['per_consumer_cpu_us']}.")
    L.append("")
    L.append("How to read it: the whole-run rate includes the group's start (the first consumer to join takes every "
             "partition until the rebalance gives the others theirs); the second rate is the one that shows how "
             "consumers add up. On this machine the broker runs on the same two cores and costs several times our "
             "consumer's CPU per event, so the machine, not the consumers, is the limit as soon as the cores are "
             "busy: compare the CPU columns with 2 cores' worth (2,000,000 µs per second). docs/scaling.md turns "
             "the per-event CPU into sizing.")
    L.append(END)
    return L


def update_md(md_path, lines):
    """Replaces section 8 in BENCHMARKS.md (or inserts it before "## Plot")."""
    wiring.replace_md_section(md_path, BEGIN, END, lines)


AMQP_BEGIN, AMQP_END = "<!-- scale-amqp: begin (BROKER=amqp bench/scale.py) -->", "<!-- scale-amqp: end -->"


def amqp_section(rows, n, command, date, load0):
    """The RabbitMQ part of section 8, right after the Kafka part (its own markers)."""
    L = [AMQP_BEGIN, "### On RabbitMQ: competing consumers", ""]
    L.append(f"`{command}`, {date}, on this machine ({os.cpu_count()} cores, load {load0} at the start). One local RabbitMQ "
             "node (Debian's rabbitmq-server), a durable quorum queue. **Receiver**: the same input and wiring as above with "
             "the receiver action of `28-dest-amqp-receiver.conf.example` (our `amqp` destination, `pass_through = true`, "
             f"publisher confirms); done when the queue holds {n:,} ready messages; it fills the queue again before each "
             "consumer row. **Processing**: k `consume` processes (`[source] type = \"amqp\"`, prefetch 2000) drain the "
             "queue into one file destination (JSON, no fsync); done when the file holds every event; then every event "
             "`id` is counted. Competing consumers on one queue need no rebalance: every consumer takes messages from "
             "the start, so the whole-run rate is the one that shows how consumers add up.")
    L.append("")
    L.append("| tier | events | seconds | events/s | CPU µs/event, ours | CPU µs/event, rsyslogd | CPU µs/event, RabbitMQ | load after |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        ours = r.get("ours_cpu_us", r.get("consumers_cpu_us"))
        rs = f"{r['rsyslogd_cpu_us']:.1f}" if "rsyslogd_cpu_us" in r else "-"
        L.append(f"| {r['row']} | {r['n']:,} | {r['seconds']:.1f} | {r['per_s']:,.0f} | {ours:.1f} | {rs} | "
                 f"{r['broker_cpu_us']:.1f} | {r['load'].replace('load ', '')} |")
    L.append("")
    for r in rows:
        if "distinct" in r:
            used = r["per_s"] * (r["consumers_cpu_us"] + r["broker_cpu_us"]) / 1e6
            L.append(f"* {r['row']}: {r['distinct']:,} distinct ids, {r['duplicates']} duplicates; "
                     f"CPU µs/event per consumer {r['per_consumer_cpu_us']}; consumers and RabbitMQ together kept "
                     f"{used:.2f} cores busy at that rate.")
    L.append("")
    L.append("How to read it: the per-consumer CPU shows the queue's work shared evenly between the consumers; the "
             "rate grows only while cores are free. On this 2-core machine our consumers and the RabbitMQ node "
             "together need about one core at the 1-consumer rate, and whatever else runs (see the load) takes the "
             "rest, so the machine is the limit from 1 or 2 consumers on. Each consumer costs the same CPU per "
             "event whatever their number, so on hosts of their own consumers add up until RabbitMQ is the limit "
             "(docs/scaling.md, Sizing).")
    L.append(AMQP_END)
    return L


def update_amqp_md(md_path, lines):
    """Replaces the RabbitMQ part of section 8 (or puts it right after the Kafka part)."""
    wiring.replace_md_section(md_path, AMQP_BEGIN, AMQP_END, lines, after=END)


def kept_section(md_path):
    """Section 8 (the Kafka part and, after it, the RabbitMQ part) as BENCHMARKS.md holds it now
    (for bench/report.py), or None."""
    try:
        text = open(md_path).read()
    except OSError:
        return None
    if BEGIN in text and END in text:
        end = text.index(END) + len(END)
        if AMQP_BEGIN in text and AMQP_END in text and text.index(AMQP_BEGIN) >= end:
            end = text.index(AMQP_END) + len(AMQP_END)
        return text[text.index(BEGIN):end]
    return None


def table(rows, broker="tansu"):
    print()
    print(f"| tier | events | seconds | events/s (whole run) | events/s (all consumers holding partitions) | CPU µs/event, ours | CPU µs/event, rsyslogd | CPU µs/event, {broker} | load after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        ours = r.get("ours_cpu_us", r.get("consumers_cpu_us"))
        steady = f"{r['stable_per_s']:,.0f} (from {r['stable_after_s']:.1f} s, {r['stable_events']:,} events)" if "stable_per_s" in r else "-"
        print(f"| {r['row']} | {r['n']:,} | {r['seconds']:.1f} | {r['per_s']:,.0f} | {steady} | {ours:.1f} | "
              f"{r['rsyslogd_cpu_us'] if 'rsyslogd_cpu_us' in r else 0:.1f} | {r['broker_cpu_us']:.1f} | {r['load']} |")
    print()
    for r in rows:
        if "distinct" not in r:
            continue
        print(f"{r['row']}: distinct ids {r['distinct']:,}, duplicates {r['duplicates']}, delivered per consumer {r.get('per_consumer_delivered', '-')}, "
              f"CPU µs/event per consumer {r['per_consumer_cpu_us']}"
              + (f", in the window: ours {r['stable_consumers_cpu_us']:.1f}, tansu {r['stable_broker_cpu_us']:.1f} µs/event" if "stable_per_s" in r else ""))


if __name__ == "__main__":
    main()
