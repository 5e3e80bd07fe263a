"""rsyslogd's memory per queued message, by element of the shipped wiring (BENCHMARKS.md section 3).

Why: the shipped action queue holds up to `queue.highWatermark` messages in memory before it
spills to disk, so what one queued message costs decides both the peak RSS and how large a burst
can be held without a spill. This measures it directly: rsyslogd receives N lines of the bench
input on imtcp; a ruleset without a queue applies the element (on the input's worker, as the
shipped cluster ruleset does before the message is queued) and calls a ruleset whose queue holds
everything, because its only action is an omprog program that answers the handshake and then never
reads (nothing is ever dequeued past the first message). The growth of rsyslogd's VmRSS divided
by N is the cost of one queued message with that element.

    python3 bench/queue_memory.py FILE N    # prints one JSON object per element
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wiring  # noqa: E402

MMSEQUENCE = 'action(type="mmsequence" mode="instance" from="0" to="2147483647" var="$.qab_seq")'
# name: (what it is, the statements the cluster ruleset runs before the message is queued)
ELEMENTS = {
    "bare": ("the message alone (no statement)", ""),
    "cluster": ('`set $.cluster = "prod";` (the shipped cluster ruleset)', 'set $.cluster = "prod";'),
    "cluster+seq": ("`set $.cluster` and the mmsequence number (version 2's wiring)",
                    f'set $.cluster = "prod";\n    {MMSEQUENCE}'),
    "seq": ("the mmsequence number alone (no `$.cluster`)", MMSEQUENCE),
    "uuid": ('the uuid filter, `if $uuid == "" then {...}` (the shipped wiring: the uuid made and kept in the message, no variable)',
             'if $uuid == "" then { set $.qab_no_uuid = "1"; }'),
}

CONF = """global(workDirectory="{tmp}")
module(load="imtcp")
module(load="omprog")
module(load="mmsequence")
template(name="qab_t" type="string" string="%msg%\\n")
ruleset(name="qab_hold" queue.type="LinkedList" queue.size="{size}" queue.highWatermark="{size}"
        queue.dequeueBatchSize="1") {{
    action(type="omprog" binary="{tmp}/hold.sh" template="qab_t" confirmMessages="on" confirmTimeout="100000000")
}}
ruleset(name="qab_in") {{
    {stmt}
    call qab_hold
}}
input(type="imtcp" port="{port}" ruleset="qab_in")
"""


def measure(wire, n, stmt):
    tmp = tempfile.mkdtemp(prefix="qab-qmem-")
    open(f"{tmp}/hold.sh", "w").write("#!/bin/sh\necho OK\nexec sleep 100000\n")
    os.chmod(f"{tmp}/hold.sh", 0o755)
    port = wiring.free_port()
    open(f"{tmp}/rsyslog.conf", "w").write(CONF.format(tmp=tmp, size=n * 2, stmt=stmt, port=port))
    d = subprocess.Popen(["rsyslogd", "-n", "-C", "-f", f"{tmp}/rsyslog.conf", "-i", f"{tmp}/pid"],
                         stdout=open(f"{tmp}/daemon.out", "w"), stderr=subprocess.STDOUT)
    try:
        if not wiring.wait_ports([port]):
            raise SystemExit(f"queue_memory: rsyslogd did not listen; see {tmp}")
        time.sleep(0.5)
        before = wiring.proc_status(d.pid, "VmRSS")
        subprocess.run([sys.executable, f"{HERE}/sender.py", str(port), wire], stdout=subprocess.DEVNULL, check=True)
        # The sender is done when rsyslogd has read everything; let the input worker finish.
        last, stable = -1, 0
        while stable < 3:
            time.sleep(0.3)
            now = wiring.proc_status(d.pid, "VmRSS")
            stable = stable + 1 if now == last else 0
            last = now
        after = last
    finally:
        for p in wiring.children_of(d.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        d.kill()
        d.wait()
        subprocess.run(["rm", "-rf", tmp])
    return dict(rss_before_kib=before, rss_after_kib=after, bytes_per_msg=(after - before) * 1024 / n)


def run(wire, n):
    out = {}
    for k, (what, stmt) in ELEMENTS.items():
        r = measure(wire, n, stmt)
        r["what"] = what
        out[k] = r
        print(f"queue memory {k:12} {r['bytes_per_msg']:6.0f} bytes per queued message", file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    for k, v in run(sys.argv[1], int(sys.argv[2])).items():
        print(json.dumps(dict(element=k, **v)))
