#!/usr/bin/env bash
# The benchmark suite: the shipped rsyslog wiring with qumulo-audit-broker side by side with the
# tools a user would pick instead (syslog-ng csv-parser, rsyslog + mmnormalize) and with rsyslog's
# omprog ceiling (a C acknowledger), on the same input in the same run.
#
#   bench/run.sh            # full run (~15 min on a 2-core machine): writes BENCHMARKS.md and bench/throughput.png
#   QUICK=1 bench/run.sh    # smoke run (~4 min), smaller inputs; writes the same files, marked QUICK
#   bench/run.sh profile    # only the callgrind profile (instructions per event), prints, writes nothing tracked
#   bench/run.sh brokers    # only section 7 (file vs amqp vs kafka destinations), replaced in BENCHMARKS.md
#                           # (QUICK=1 for the smoke size); needs rabbitmq-server, tansu and kafka-python,
#                           # a missing one is named in the section instead
#   bench/run.sh scale      # only section 8 (receiver tier and 1, 2, 4 `consume` processes through
#                           # Kafka, bench/scale.py), replaced in BENCHMARKS.md; needs tansu and
#                           # kafka-python; SCALE_N=events (default 100,000);
#                           # BROKER=amqp: the same on RabbitMQ (its own part of section 8)
#   KEEP=1 bench/run.sh     # keep each end-to-end run's temp dir (rsyslog.conf, logs, outputs)
#
# Needs: cargo, gcc, python3 (stdlib only), rsyslogd (imtcp, omprog, mmnormalize); valgrind for the
# profile section (skipped without it and in QUICK mode). syslog-ng is NOT installed (Debian's
# syslog-ng-core removes rsyslog): bench/wiring.py fetches it with `apt-get download` and unpacks it
# with `dpkg -x` under bench/build/syslog-ng; a peer that cannot be had is named in BENCHMARKS.md
# as missing. Generated inputs go to bench/data/, compiled helpers and syslog-ng to bench/build/,
# raw results to bench/results/ (all git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in cargo gcc python3 rsyslogd; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done
echo "bench: $(uptime)" >&2
if [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/mmnormalize.so ] && command -v apt-get >/dev/null; then
  # Debian 12 ships mmnormalize in rsyslog itself; older releases in rsyslog-mmnormalize.
  apt-get install -y -qq rsyslog-mmnormalize >/dev/null 2>&1 || echo "bench: rsyslog-mmnormalize not installed" >&2
fi
# QAB_BIN=path bench/run.sh ...: measure that binary (e.g. the static musl build packaging/build.sh
# made) instead of building target/release/qumulo-audit-broker.
if [ -z "${QAB_BIN:-}" ]; then
  cargo build --release --quiet
  QAB_BIN="$PWD/target/release/qumulo-audit-broker"
fi
export QAB_BIN
if [ "${1:-}" = scale ]; then
  export SCALE_WRITE=1 BENCH_COMMAND="${BROKER:+BROKER=$BROKER }${SCALE_N:+SCALE_N=$SCALE_N }bench/run.sh scale"
  # 100,000 by default: tansu 0.6 (memory storage) slowed to a crawl serving 300,000 one-record
  # batches (docs/scaling.md, Sizing).
  exec python3 bench/scale.py "${SCALE_N:-100000}"
fi
mkdir -p bench/build
gcc -O2 -Wall -Wextra -o bench/build/ack bench/ack.c
gcc -O2 -Wall -Wextra -o bench/build/pingpong bench/pingpong.c
# The binary of the revision before issue 11 (bench/wiring.py BEFORE_REV), for the "before" row:
# the wiring and the binary shipped then, in the same run. Built once into bench/build/before.
if [ "${1:-}" = brokers ]; then export NO_BEFORE=1 BROKERS_ONLY=1; fi
BEFORE_REV=$(sed -n 's/^BEFORE_REV = "\(.*\)"$/\1/p' bench/wiring.py)
if [ -z "${NO_BEFORE:-}" ] && git cat-file -e "$BEFORE_REV^{commit}" 2>/dev/null; then
  if [ ! -x bench/build/before/release/qumulo-audit-broker ]; then
    echo "bench: building the binary of $BEFORE_REV (once)" >&2
    rm -rf bench/build/before-src && mkdir -p bench/build/before-src
    git archive "$BEFORE_REV" | tar -x -C bench/build/before-src
    CARGO_TARGET_DIR="$PWD/bench/build/before" cargo build --release --quiet --manifest-path bench/build/before-src/Cargo.toml
    rm -rf bench/build/before-src
  fi
  export BEFORE_BIN="$PWD/bench/build/before/release/qumulo-audit-broker"
fi
export ACK_BIN="$PWD/bench/build/ack"
export PINGPONG_BIN="$PWD/bench/build/pingpong"
export BENCH_COMMAND="${QUICK:+QUICK=1 }bench/run.sh${1:+ $1}"
if [ "${1:-}" = profile ]; then export PROFILE_ONLY=1; fi
exec python3 bench/bench.py
