#!/usr/bin/env bash
# The benchmark suite: qumulo-audit-broker side by side with rsyslog's omprog ceiling and a peer.
#
#   bench/run.sh            # full run (~10 min on a 2-core machine): writes BENCHMARKS.md and bench/throughput.png
#   QUICK=1 bench/run.sh    # smoke run (~2 min), smaller inputs; writes the same files, marked QUICK
#   bench/run.sh profile    # only the callgrind profile (instructions per event), prints, writes nothing tracked
#   KEEP=1 bench/run.sh     # keep each end-to-end run's temp dir (rsyslog.conf, logs, outputs)
#
# Needs: cargo, gcc, python3 (stdlib only), rsyslogd (imtcp, omprog), taskset; valgrind for the
# profile section (skipped without it and in QUICK mode). Generated inputs go to bench/data/,
# compiled helpers to bench/build/, raw results to bench/results/ (all git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in cargo gcc python3 rsyslogd taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done
echo "bench: $(uptime)" >&2
cargo build --release --quiet
mkdir -p bench/build
gcc -O2 -Wall -Wextra -o bench/build/ack bench/ack.c
gcc -O2 -Wall -Wextra -pthread -o bench/build/httpsink bench/httpsink.c
gcc -O2 -Wall -Wextra -o bench/build/pingpong bench/pingpong.c
export QAB_BIN="$PWD/target/release/qumulo-audit-broker"
export ACK_BIN="$PWD/bench/build/ack"
export HTTPSINK_BIN="$PWD/bench/build/httpsink"
export PINGPONG_BIN="$PWD/bench/build/pingpong"
export BENCH_COMMAND="${QUICK:+QUICK=1 }bench/run.sh"
if [ "${1:-}" = profile ]; then export PROFILE_ONLY=1; fi
exec python3 bench/bench.py
