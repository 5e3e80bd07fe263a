#!/usr/bin/env bash
# Local demo pipeline: a real rsyslogd on loopback, two clusters, our binary behind omprog with
# a file destination. Feeds the shipped sample audit logs (syslog CSV, syslog JSON, CloudWatch)
# over TCP and prints what was delivered and the broker's stats line.
#
#   ./demo.sh            # builds (release), runs, cleans up
#   KEEP=1 ./demo.sh     # keep the temp directory to look around
set -euo pipefail
cd "$(dirname "$0")"
command -v rsyslogd >/dev/null || { echo "demo: rsyslogd not found (apt-get install rsyslog)" >&2; exit 1; }
cargo build --release --quiet
BIN="$PWD/target/release/qumulo-audit-broker"
TMP=$(mktemp -d /tmp/qab-demo.XXXXXX)
cleanup() {
  [ -f "$TMP/rsyslogd.pid" ] && kill "$(cat "$TMP/rsyslogd.pid")" 2>/dev/null || true
  sleep 0.5
  if [ -z "${KEEP:-}" ]; then rm -rf "$TMP"; else echo "demo: kept $TMP"; fi
}
trap cleanup EXIT
mkdir -p "$TMP/spool" "$TMP/journal"
read -r P1 P2 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

cat > "$TMP/file.toml" <<TOML
[destination]
type = "file"
path = "$TMP/events.ndjson"
format = "json"
[dead_letter]
path = "$TMP/dead-letter.ndjson"
[journal]
dir = "$TMP/journal"
[stats]
interval_secs = 1
TOML

# The same shape as the shipped rsyslog.d drop-ins: a listener per cluster, named qab-<cluster>
# (the name names the cluster in the envelope), whose ruleset calls the delivery ruleset; the
# message's uuid (the event id) made before the action queues it; one omprog action with its
# own disk-assisted queue. The envelope template is the one the package ships.
TEMPLATE=$(sed -n '/^template(name="qab_envelope_v3"/,/)$/p' "packaging/rsyslog/qumulo-audit-broker.conf")
cat > "$TMP/rsyslog.conf" <<CONF
global(workDirectory="$TMP/spool")
module(load="imtcp")
module(load="omprog")
$TEMPLATE
input(type="imtcp" name="qab-alpha" address="127.0.0.1" port="$P1" ruleset="cluster_alpha")
input(type="imtcp" name="qab-beta" address="127.0.0.1" port="$P2" ruleset="cluster_beta")
ruleset(name="cluster_alpha") { call qab_deliver }
ruleset(name="cluster_beta") { call qab_deliver }
ruleset(name="qab_deliver") {
  if \$uuid == "" then { set \$.qab_no_uuid = "1"; }
  action(type="omprog" name="qab_file"
         binary="$BIN omprog --config $TMP/file.toml"
         template="qab_envelope_v3" output="$TMP/broker.log"
         confirmMessages="on" useTransactions="on" confirmTimeout="30000"
         signalOnClose="on" closeTimeout="5000" hup.signal="HUP"
         action.resumeRetryCount="-1" action.resumeInterval="1"
         queue.type="LinkedList" queue.filename="qab_file" queue.saveOnShutdown="on"
         queue.dequeueBatchSize="1024")
}
CONF
rsyslogd -N1 -f "$TMP/rsyslog.conf" >"$TMP/n1.out" 2>&1 || { cat "$TMP/n1.out"; exit 1; }
rsyslogd -n -f "$TMP/rsyslog.conf" -i "$TMP/rsyslogd.pid" -C 2>"$TMP/rsyslogd.err" &
for _ in $(seq 100); do
  python3 -c "import socket;socket.create_connection(('127.0.0.1',$P2),0.2).close()" 2>/dev/null && break
  sleep 0.1
done

# Qumulo sends syslog over TCP, one line per audit record; the samples carry an RSYSLOG
# traditional header already, the CloudWatch export gets one added.
python3 - "$P1" "$P2" <<'PY'
import socket, sys
p1, p2 = int(sys.argv[1]), int(sys.argv[2])
def send(port, lines):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall("".join(l.rstrip("\n") + "\n" for l in lines).encode())
csv = open("examples/syslog-csv.log").read().splitlines()
js = open("examples/syslog-json.log").read().splitlines()
cw = [l for l in open("examples/cloudwatch.txt").read().splitlines() if l.startswith("| 1")]
send(p1, ["<134>" + l for l in csv + js])
send(p2, ["<134>Jun  6 14:52:28 q-beta-1 qumulo " + l for l in cw])
print(f"demo: sent {len(csv)} CSV + {len(js)} JSON lines as cluster alpha, {len(cw)} CloudWatch rows as cluster beta")
PY
want=$(( $(wc -l < examples/syslog-csv.log) + $(wc -l < examples/syslog-json.log) + $(grep -c '^| 1' examples/cloudwatch.txt) ))
for _ in $(seq 100); do
  [ -f "$TMP/events.ndjson" ] && [ "$(wc -l < "$TMP/events.ndjson")" -ge "$want" ] && break
  sleep 0.1
done
sleep 1.2
echo "demo: delivered events ($TMP/events.ndjson):"
python3 - "$TMP/events.ndjson" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print(f"  {e['cluster']:6} {e['source_format']:10} {e.get('time') or '-':30} {e['user'].get('name','-'):10} {e['operation']:34} {e['action']:14} {e['object_type']:9} {e.get('path','')}")
PY
got=$(wc -l < "$TMP/events.ndjson")
echo "demo: $got of $want events delivered; dead-lettered: $(cat "$TMP/dead-letter.ndjson" 2>/dev/null | wc -l)"
echo "demo: broker stats: $(grep 'stats:' "$TMP/broker.log" | tail -n 1 | sed 's/.*stats: //')"
[ "$got" -eq "$want" ]
