#!/usr/bin/env bash
# Runs every test: unit and integration tests (real rsyslogd, HTTP and syslog receivers),
# then the packaging checks. Needs rsyslog, rpm and lintian (`.ci/run` installs them).
set -euo pipefail
cd "$(dirname "$0")"
echo "== cargo test"
cargo test --all-targets
if [ -x tests/packaging.sh ]; then
  echo "== packaging"
  tests/packaging.sh
fi
echo "== all tests passed"
