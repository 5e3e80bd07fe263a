#!/usr/bin/env bash
# Packaging tests: builds the .deb and .rpm (packaging/build.sh), checks their contents,
# conffiles, modes, scripts and dependencies, runs lintian, validates every shipped rsyslog
# drop-in with `rsyslogd -N1`, and runs the INSTALLED package end to end: the .deb unpacked into a
# throw-away root, rsyslogd (unprivileged) with the shipped drop-ins, two clusters sending, two
# destinations (the shipped file destination and the Splunk HEC example against a local mock)
# receiving.
#
#   tests/packaging.sh               # everything; prints one PASS/FAIL/SKIP line per check
#   KEEP=1 tests/packaging.sh        # keep the work directory
#   QAB_TEST_DPKG=1 tests/packaging.sh   # also dpkg -i / -r / -P on this machine (root; changes
#                                        # the machine while it runs; skipped if already installed)
#
# Needs: rsyslog (rsyslogd), dpkg-deb, lintian, rpm, python3, file; cargo. Exit status: 0 only if no
# check failed. The last line reads "N passed, N failed, N skipped".
#
# How the unpacked package is adapted for the test (the only changes to shipped files), in
# relocate() below: every absolute path of the package (/etc/qumulo-audit-broker/,
# /usr/share/qumulo-audit-broker/, /usr/libexec/rsyslog/, /var/{spool,lib,log}/qumulo-audit-broker/)
# is prefixed with the throw-away root; in the end-to-end run the example listener ports 10514 and
# 10515 become free loopback ports (address="127.0.0.1" added), and the HEC example's URL points to
# the local mock; for `check`, the syslog examples' host names become 127.0.0.1.
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD

PASSED=0 FAILED=0 SKIPPED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1${2:+ -- $2}"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $1${2:+ -- $2}"; SKIPPED=$((SKIPPED + 1)); }
# check NAME COMMAND...: PASS if the command succeeds, else FAIL with the tail of its output.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(printf '%s' "$out" | tail -n 6 | tr '\n' ' ' | cut -c1-600)"; fi
}
finish() {
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    [ "$FAILED" -eq 0 ]
    exit $?
}

W=$(mktemp -d /tmp/qab-pkgtest.XXXXXX)
chmod 0755 "$W"
RSYSLOG_PID_FILE="$W/run/rsyslogd.pid"
MOCK_PID=""
cleanup() {
    if [ -f "$RSYSLOG_PID_FILE" ]; then kill "$(cat "$RSYSLOG_PID_FILE")" 2>/dev/null; sleep 1; fi
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

# Debian packages the checks need: installed when missing (root with apt-get only).
missing=""
for pair in rsyslogd:rsyslog lintian:lintian rpm:rpm file:file runuser:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "INFO installing:$missing"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >"$W/apt.log" 2>&1 || true
fi
for tool in rsyslogd dpkg-deb lintian rpm python3 file cargo; do
    command -v "$tool" >/dev/null 2>&1 || { fail "tool $tool present" "install it (rsyslog, dpkg, lintian, rpm, python3, file)"; }
done
[ "$FAILED" -eq 0 ] || finish

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
if packaging/build.sh >"$W/build.log" 2>&1; then
    pass "build: packaging/build.sh builds binary, .deb and .rpm"
else
    fail "build: packaging/build.sh" "$(tail -n 8 "$W/build.log" | tr '\n' ' ')"
    finish
fi
DEB=$(ls -t target/packages/qumulo-audit-broker_*.deb | head -n 1)
RPM=$(ls -t target/packages/qumulo-audit-broker-*.rpm | head -n 1)
echo "INFO deb: $DEB"
echo "INFO rpm: $RPM"

# ---------------------------------------------------------------------------------------------
# .deb: file list, modes, owners, conffiles, control, maintainer scripts, lintian
# ---------------------------------------------------------------------------------------------
# "mode path" for every regular file in the .deb, from dpkg-deb -c.
dpkg-deb -c "$DEB" | python3 -c '
import sys
for line in sys.stdin:
    perms, owner, size, date, time, path = line.split(None, 5)
    path = path.strip()
    if perms[0] != "-":
        continue
    bits = 0
    for ch in perms[1:10]:
        bits = bits * 2 + (ch != "-")
    print("%04o %s %s" % (bits, owner, path[1:]))
' | sort >"$W/deb-files.txt"

{
    echo "0755 /usr/libexec/rsyslog/qumulo-audit-broker"
    echo "0755 /usr/bin/qumulo-audit-broker"
    echo "0755 /usr/libexec/qumulo-audit-broker/setup-dirs"
    echo "0644 /etc/rsyslog.d/10-qumulo-audit-broker.conf"
    echo "0644 /usr/share/qumulo-audit-broker/rsyslog/qumulo-audit-broker.conf"
    for f in rsyslog.d/*; do echo "0644 /etc/qumulo-audit-broker/rsyslog.d/${f##*/}"; done
    for f in packaging/etc/*.toml packaging/etc/*.toml.example; do echo "0640 /etc/qumulo-audit-broker/${f##*/}"; done
    echo "0644 /etc/qumulo-audit-broker/clusters.json.example"
    echo "0644 /etc/logrotate.d/qumulo-audit-broker"
    echo "0644 /usr/share/man/man1/qumulo-audit-broker.1.gz"
    for f in docs/*.md ARCHITECTURE.md; do echo "0644 /usr/share/doc/qumulo-audit-broker/$f"; done
    echo "0644 /usr/share/qumulo-audit-broker/elasticsearch/qumulo-audit-ecs-template.json"
    echo "0644 /usr/share/doc/qumulo-audit-broker/README.md"
    echo "0644 /usr/share/doc/qumulo-audit-broker/copyright"
    echo "0644 /usr/share/doc/qumulo-audit-broker/changelog.Debian.gz"
    echo "0644 /usr/share/lintian/overrides/qumulo-audit-broker"
    for f in examples/*; do echo "0644 /usr/share/doc/qumulo-audit-broker/examples/${f##*/}"; done
} | sort >"$W/deb-expected.txt"
awk '{print $1, $3}' "$W/deb-files.txt" >"$W/deb-actual.txt"
check "deb: file list and modes (dpkg-deb -c) match the expected layout" diff -u "$W/deb-expected.txt" "$W/deb-actual.txt"
check "deb: every file owned by root/root" bash -c "awk '\$2 != \"root/root\" && \$2 != \"0/0\" {print; bad=1} END {exit bad}' '$W/deb-files.txt'"

mkdir -p "$W/bin"
dpkg-deb --fsys-tarfile "$DEB" | tar -xOf - ./usr/libexec/rsyslog/qumulo-audit-broker >"$W/bin/qumulo-audit-broker"
if grep -q 'building release binary for x86_64-unknown-linux-musl' "$W/build.log"; then
    check "deb: binary is statically linked (musl)" bash -c "file '$W/bin/qumulo-audit-broker' | grep -Eq 'statically linked|static-pie linked'"
else
    skip "deb: binary is statically linked" "build.sh fell back to a glibc build (see build log)"
fi

dpkg-deb -f "$DEB" Depends >"$W/depends.txt"
check "deb: Depends is exactly 'rsyslog (>= 8.2001)' (dpkg-deb -I)" grep -qx 'rsyslog (>= 8.2001)' "$W/depends.txt"
check "deb: Suggests rsyslog-gnutls, the listener TLS driver" bash -c "[ \"\$(dpkg-deb -f '$DEB' Suggests)\" = rsyslog-gnutls ]"
check "deb: Package/Architecture fields" bash -c "[ \"\$(dpkg-deb -f '$DEB' Package Architecture | tr '\n' ' ')\" = 'Package: qumulo-audit-broker Architecture: amd64 ' ]"

mkdir -p "$W/control"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xf - -C "$W/control"
grep '^0... /etc/' "$W/deb-actual.txt" | awk '{print $2}' | sort >"$W/etc-files.txt"
sort "$W/control/conffiles" >"$W/conffiles.txt"
check "deb: conffiles are exactly the files under /etc (dpkg-deb --ctrl-tarfile)" diff -u "$W/etc-files.txt" "$W/conffiles.txt"
check "deb: postinst and postrm present, executable, valid sh" \
    bash -c "[ -x '$W/control/postinst' ] && [ -x '$W/control/postrm' ] && sh -n '$W/control/postinst' && sh -n '$W/control/postrm'"
check "deb: no unexpanded #DEBHELPER# token" bash -c "! grep -q '#DEBHELPER#' '$W/control/postinst' '$W/control/postrm'"

# postrm purge, its paths relocated into a throw-away root: a journal whose header says nothing is
# undelivered goes, one with undelivered lines stays; the state files and what `apply` wrote go;
# a file the administrator created (a secret) stays and is listed.
PR="$W/purge-root"
mkdir -p "$PR/etc/qumulo-audit-broker/rsyslog.d" "$PR/etc/qumulo-audit-broker/rsyslog.d.prev" \
    "$PR/var/spool/qumulo-audit-broker/journal/file" "$PR/var/spool/qumulo-audit-broker/journal/file.state" \
    "$PR/var/spool/qumulo-audit-broker/journal/hec" "$PR/var/spool/qumulo-audit-broker/queue" \
    "$PR/var/lib/qumulo-audit-broker/dead-letter" "$PR/var/log/qumulo-audit-broker"
python3 - "$PR/var/spool/qumulo-audit-broker/journal" <<'PY'
import struct, sys
d = sys.argv[1]
open(d + "/file/journal-1-1.jnl", "wb").write(b"QABJNL2\n" + struct.pack("<Q", 0) + b"delivered line\n")
open(d + "/hec/journal-2-2.jnl", "wb").write(b"QABJNL2\n" + struct.pack("<Q", 15) + b"undelivered ln\n")
PY
echo '{}' >"$PR/var/spool/qumulo-audit-broker/journal/file.state/state-1-1.json"
printf '# Generated by `qumulo-audit-broker apply` from broker.toml.\n' >"$PR/etc/qumulo-audit-broker/rsyslog.d/20-destinations.conf"
echo x >"$PR/etc/qumulo-audit-broker/rsyslog.d/applied-broker.toml"
echo secret >"$PR/etc/qumulo-audit-broker/hec.token"
echo 'input(type="imtcp" port="10514")' >"$PR/etc/qumulo-audit-broker/rsyslog.d/30-clusters.conf"
sed -e "s#/etc/qumulo-audit-broker#$PR/etc/qumulo-audit-broker#g" -e "s#/var/spool/qumulo-audit-broker#$PR/var/spool/qumulo-audit-broker#g" \
    -e "s#/var/lib/qumulo-audit-broker#$PR/var/lib/qumulo-audit-broker#g" -e "s#/var/log/qumulo-audit-broker#$PR/var/log/qumulo-audit-broker#g" \
    "$W/control/postrm" >"$W/postrm-relocated"
sh "$W/postrm-relocated" purge >"$W/purge.out" 2>&1
J="$PR/var/spool/qumulo-audit-broker/journal"
check "postrm purge: delivered journal and state files removed, undelivered journal kept" \
    bash -c "[ ! -e '$J/file' ] && [ ! -e '$J/file.state' ] && [ -f '$J/hec/journal-2-2.jnl' ] && grep -q 'journal is not empty' '$W/purge.out'"
check "postrm purge: what apply wrote is removed; the administrator's secret stays and is listed" \
    bash -c "[ ! -e '$PR/etc/qumulo-audit-broker/rsyslog.d/20-destinations.conf' ] && [ ! -e '$PR/etc/qumulo-audit-broker/rsyslog.d/applied-broker.toml' ] && [ ! -e '$PR/etc/qumulo-audit-broker/rsyslog.d.prev' ] && [ -f '$PR/etc/qumulo-audit-broker/hec.token' ] && grep -q 'created by the administrator' '$W/purge.out' && grep -q 'hec.token' '$W/purge.out'"
check "postrm purge: an administrator's drop-in is kept inactive and listed (a reinstall starts from the working default)" \
    bash -c "[ ! -e '$PR/etc/qumulo-audit-broker/rsyslog.d/30-clusters.conf' ] && [ -f '$PR/etc/qumulo-audit-broker/rsyslog.d/30-clusters.conf.disabled-by-purge' ] && grep -q '30-clusters.conf.disabled-by-purge' '$W/purge.out'"
check "deb: postinst runs setup-dirs on configure" grep -q '/usr/libexec/qumulo-audit-broker/setup-dirs' "$W/control/postinst"
check "deb: postrm re-triggers rsyslog on remove, keeps undelivered data on purge" \
    bash -c "grep -q 'dpkg-trigger --no-await /etc/rsyslog.d' '$W/control/postrm' && grep -q 'rmdir' '$W/control/postrm'"

lintian --tag-display-limit 0 --show-overrides "$DEB" >"$W/lintian.txt" 2>&1
lintian_rc=$?
lE=$(grep -c '^E: ' "$W/lintian.txt") lW=$(grep -c '^W: ' "$W/lintian.txt")
lI=$(grep -c '^I: ' "$W/lintian.txt") lO=$(grep -c '^O: ' "$W/lintian.txt")
echo "INFO lintian: $lE errors, $lW warnings, $lI info, $lO overridden (reasons in packaging/lintian/qumulo-audit-broker)"
sed 's/^/INFO   /' "$W/lintian.txt" | grep -E 'INFO   [EWIO]: '
if [ "$lE" -eq 0 ] && [ "$lintian_rc" -eq 0 ]; then pass "deb: lintian reports no errors"; else fail "deb: lintian reports no errors" "exit $lintian_rc, $lE errors"; fi

# ---------------------------------------------------------------------------------------------
# .rpm: same files and modes, %config(noreplace), scripts, requires
# ---------------------------------------------------------------------------------------------
# Regular files here; the package's directories are checked below.
rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" 2>/dev/null | awk '$1 !~ /^d/ {print $2}' | sort >"$W/rpm-list.txt"
grep -v -E '/usr/share/doc/qumulo-audit-broker/(copyright|changelog.Debian.gz)$|/usr/share/lintian/' "$W/deb-actual.txt" | awk '{print $2}' | sort >"$W/rpm-expected-list.txt"
check "rpm: file list (rpm -qlp) matches the .deb's (minus Debian-only copyright, changelog, lintian override)" \
    diff -u "$W/rpm-expected-list.txt" "$W/rpm-list.txt"
rpm -qp --qf '[%{FILEMODES:octal} %{FILENAMES}\n]' "$RPM" 2>/dev/null | grep -v '^4' | sed -E 's/^10*([0-7]{3,4}) /\1 /' |
    awk '{printf "%04d %s\n", $1, $2}' | sort >"$W/rpm-modes.txt"
grep -v -E '/usr/share/doc/qumulo-audit-broker/(copyright|changelog.Debian.gz)$|/usr/share/lintian/' "$W/deb-actual.txt" >"$W/rpm-expected-modes.txt"
check "rpm: file modes match the .deb's (0640 for destination configs)" diff -u "$W/rpm-expected-modes.txt" "$W/rpm-modes.txt"
rpm -qcp "$RPM" 2>/dev/null | sort >"$W/rpm-config.txt"
check "rpm: config files (rpm -qcp) are exactly the files under /etc" diff -u "$W/etc-files.txt" "$W/rpm-config.txt"
check "rpm: every config file is %config(noreplace)" bash -c \
    "rpm -qp --qf '[%{FILEMODES:perms} %{FILEFLAGS:fflags}: %{FILENAMES}\n]' '$RPM' | awk '\$1 !~ /^d/ && \$3 ~ /^\/etc\// && \$2 != \"cn:\" {print; bad=1} END {exit bad}'"
# The directories it ships files into or setup-dirs creates, owned by the package (rpm -e removes
# them when empty; rpm -qf names the package), with the modes setup-dirs gives them.
{
    for d in /etc/qumulo-audit-broker /var/spool/qumulo-audit-broker /var/spool/qumulo-audit-broker/queue \
        /var/spool/qumulo-audit-broker/journal /var/lib/qumulo-audit-broker /var/lib/qumulo-audit-broker/dead-letter \
        /var/log/qumulo-audit-broker; do
        echo "drwxr-x--- root:root $d"
    done
    for d in /etc/qumulo-audit-broker/rsyslog.d /usr/libexec/qumulo-audit-broker /usr/share/qumulo-audit-broker \
        /usr/share/qumulo-audit-broker/rsyslog /usr/share/qumulo-audit-broker/elasticsearch /usr/share/doc/qumulo-audit-broker \
        /usr/share/doc/qumulo-audit-broker/docs /usr/share/doc/qumulo-audit-broker/examples; do
        echo "drwxr-xr-x root:root $d"
    done
} | sort -k3 >"$W/rpm-dirs-expected.txt"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$RPM" 2>/dev/null | awk '$1 ~ /^d/' | sort -k3 >"$W/rpm-dirs.txt"
check "rpm: owns its directories (/etc/qumulo-audit-broker, /var/{spool,lib,log}, /usr/share/doc ...), modes as setup-dirs sets them" \
    diff -u "$W/rpm-dirs-expected.txt" "$W/rpm-dirs.txt"
check "rpm: every directory holding a file of the package under its own names is owned by it" bash -c \
    "awk '{print \$3}' '$W/rpm-dirs.txt' >'$W/rpm-dir-names.txt'; while read -r f; do d=\${f%/*}; case \$d in *qumulo-audit-broker*) grep -qx \"\$d\" '$W/rpm-dir-names.txt' || { echo \"not owned: \$d\"; exit 1; } ;; esac; done <'$W/rpm-list.txt'"
rpm -qp --scripts "$RPM" >"$W/rpm-scripts.txt" 2>/dev/null
check "rpm: post-install script runs setup-dirs and 'systemctl try-restart rsyslog.service >/dev/null 2>&1 || :'" \
    bash -c "sed -n '/^postinstall scriptlet/,/^\$/p' '$W/rpm-scripts.txt' | grep -q 'setup-dirs' && sed -n '/^postinstall scriptlet/,/^\$/p' '$W/rpm-scripts.txt' | grep -qF 'systemctl try-restart rsyslog.service >/dev/null 2>&1 || :'"
check "rpm: post-uninstall script runs 'systemctl try-restart rsyslog.service >/dev/null 2>&1 || :'" \
    bash -c "sed -n '/^postuninstall scriptlet/,/^\$/p' '$W/rpm-scripts.txt' | grep -qF 'systemctl try-restart rsyslog.service >/dev/null 2>&1 || :'"
check "rpm: requires 'rsyslog >= 8.2001' (rpm -qp --requires)" bash -c "rpm -qp --requires '$RPM' 2>/dev/null | grep -qx 'rsyslog >= 8.2001'"
check "rpm: suggests rsyslog-gnutls, the listener TLS driver (rpm -qp --suggests)" bash -c "rpm -qp --suggests '$RPM' 2>/dev/null | grep -qx 'rsyslog-gnutls'"

# ---------------------------------------------------------------------------------------------
# rsyslogd -N1: every shipped drop-in, alone and together, against Debian's rsyslog.conf
# ---------------------------------------------------------------------------------------------
PRISTINE="$W/pristine"
dpkg-deb -x "$DEB" "$PRISTINE"

# relocate ROOT FILE...: prefix the package's absolute paths with ROOT (see the header).
relocate() {
    local root=$1
    shift
    sed -i \
        -e "s#/etc/qumulo-audit-broker/#$root/etc/qumulo-audit-broker/#g" \
        -e "s#/usr/share/qumulo-audit-broker/#$root/usr/share/qumulo-audit-broker/#g" \
        -e "s#/usr/libexec/rsyslog/#$root/usr/libexec/rsyslog/#g" \
        -e "s#/var/spool/qumulo-audit-broker/#$root/var/spool/qumulo-audit-broker/#g" \
        -e "s#/var/lib/qumulo-audit-broker/#$root/var/lib/qumulo-audit-broker/#g" \
        -e "s#/var/log/qumulo-audit-broker/#$root/var/log/qumulo-audit-broker/#g" \
        "$@"
}
# new_root NAME: a fresh relocated copy of the unpacked package; prints its path.
new_root() {
    local r="$W/$1"
    rm -rf "$r"
    cp -a "$PRISTINE" "$r"
    relocate "$r" "$r"/etc/rsyslog.d/*.conf "$r"/usr/share/qumulo-audit-broker/rsyslog/*.conf \
        "$r"/etc/qumulo-audit-broker/rsyslog.d/* "$r"/etc/qumulo-audit-broker/*.toml*
    mkdir -p "$r/work"
    echo "$r"
}
# main_conf ROOT [debian|minimal]: the test's main rsyslog.conf including ROOT/etc/rsyslog.d.
main_conf() {
    local r=$1 kind=${2:-debian}
    if [ "$kind" = debian ] && [ -f /etc/rsyslog.conf ]; then
        sed -e "s#^\\\$IncludeConfig .*#\$IncludeConfig $r/etc/rsyslog.d/*.conf#" \
            -e "s#^\\\$WorkDirectory .*#\$WorkDirectory $r/work#" /etc/rsyslog.conf
    else
        printf 'global(workDirectory="%s/work")\naction(type="omfile" file="%s/work/internal.log")\n$IncludeConfig %s/etc/rsyslog.d/*.conf\n' "$r" "$r" "$r"
    fi >"$r/main.conf"
    echo "$r/main.conf"
}
n1() { rsyslogd -N1 -f "$1"; }
# enable ROOT EXAMPLE: turn one .conf.example on the way its header says.
enable() {
    local r=$1 ex=$2 d="$1/etc/qumulo-audit-broker/rsyslog.d"
    cp "$d/$ex" "$d/${ex%.example}"
    case "$ex" in
        30-*|31-*) sed -i 's/^#module(load="imtcp"/module(load="imtcp"/' "$d/10-modules.conf"
                   cp "$r/etc/qumulo-audit-broker/clusters.json.example" "$r/etc/qumulo-audit-broker/clusters.json" ;;
        2[1-9]-dest-*|40-*)
            local rs
            rs=$(sed -n 's/^ruleset(name="\([^"]*\)").*/\1/p' "$d/$ex" | head -n 1)
            sed -i "s/^    #call $rs\\b/    call $rs/" "$d/50-deliver.conf" ;;
    esac
}

R=$(new_root n1-default)
M=$(main_conf "$R")
if [ -f /etc/rsyslog.conf ]; then echo "INFO rsyslogd -N1 main config: this machine's /etc/rsyslog.conf with \$IncludeConfig and \$WorkDirectory redirected"; fi
check "rsyslogd -N1: shipped default configuration" n1 "$M"
check "safe default: no active input() and no imtcp load in any shipped .conf" bash -c \
    "! cat '$R'/etc/rsyslog.d/*.conf '$R'/usr/share/qumulo-audit-broker/rsyslog/*.conf '$R'/etc/qumulo-audit-broker/rsyslog.d/*.conf | sed 's/#.*//' | grep -Eq 'input\\(|imtcp|imudp'"
check "safe default: shipped destination is the local file only (file.toml; broker.toml: one file destination, no cluster)" bash -c \
    "[ \"\$(ls '$R'/etc/qumulo-audit-broker/*.toml | xargs -n1 basename | tr '\n' ' ')\" = 'broker.toml file.toml ' ] && grep -q '^type = \"file\"' '$R/etc/qumulo-audit-broker/file.toml' && [ \"\$(grep -c '^type = ' '$R/etc/qumulo-audit-broker/broker.toml')\" = 1 ] && grep -q '^type = \"file\"' '$R/etc/qumulo-audit-broker/broker.toml' && ! grep -q '^\[\[cluster\]\]' '$R/etc/qumulo-audit-broker/broker.toml'"
check "safe default: no global() and no module load in the package-owned include" bash -c \
    "! sed 's/#.*//' '$R/usr/share/qumulo-audit-broker/rsyslog/qumulo-audit-broker.conf' | grep -Eq 'global\\(|module\\(|\\\$WorkDirectory|\\\$ModLoad'"

for ex in "$PRISTINE"/etc/qumulo-audit-broker/rsyslog.d/*.example; do
    ex=${ex##*/}
    R=$(new_root "n1-${ex%%.*}")
    enable "$R" "$ex"
    check "rsyslogd -N1: with $ex enabled" n1 "$(main_conf "$R")"
done

R=$(new_root n1-all)
for ex in "$R"/etc/qumulo-audit-broker/rsyslog.d/*.example; do enable "$R" "${ex##*/}"; done
check "rsyslogd -N1: all examples enabled together" n1 "$(main_conf "$R")"

R=$(new_root n1-main-imtcp)
M=$(main_conf "$R")
sed -i -e 's/^#module(load="imtcp")/module(load="imtcp")/' -e 's/^#input(type="imtcp" port="514")/input(type="imtcp" port="514")/' "$M"
check "rsyslogd -N1: shipped default next to a rsyslog.conf that loads imtcp itself" n1 "$M"
sed -i 's/^#module(load="imtcp"/module(load="imtcp"/' "$R/etc/qumulo-audit-broker/rsyslog.d/10-modules.conf"
if out=$(n1 "$M" 2>&1); then
    fail "rsyslogd -N1: loading imtcp twice is refused (documented pitfall)" "rsyslogd accepted it: docs in 10-modules.conf are wrong"
else
    if grep -q "already in this config" <<<"$out"; then pass "rsyslogd -N1: loading imtcp twice is refused (documented pitfall)"; else fail "rsyslogd -N1: loading imtcp twice is refused" "$out"; fi
fi

R=$(new_root n1-removed)
rm -rf "$R/usr/share/qumulo-audit-broker" "$R/usr/libexec"
check "rsyslogd -N1: after 'apt remove' (conffiles kept, package files gone) the configuration is still valid" n1 "$(main_conf "$R")"

# ---------------------------------------------------------------------------------------------
# setup-dirs (what postinst / %post run)
# ---------------------------------------------------------------------------------------------
R=$(new_root setup-dirs)
if [ "$(id -u)" = 0 ]; then
    QAB_ROOT="$R" QAB_RSYSLOG_USER=nobody "$R/usr/libexec/qumulo-audit-broker/setup-dirs" >"$W/setup-dirs.log" 2>&1
    ng=$(id -gn nobody)
    check "setup-dirs: spool, journal, queue, dead-letter and log dirs exist, 0750, owned by rsyslog's user" bash -c "
        for d in var/spool/qumulo-audit-broker var/spool/qumulo-audit-broker/queue var/spool/qumulo-audit-broker/journal \
                 var/lib/qumulo-audit-broker/dead-letter var/log/qumulo-audit-broker; do
            [ \"\$(stat -c '%a %U' '$R'/\$d)\" = '750 nobody' ] || { echo \"\$d: \$(stat -c '%a %U:%G' '$R'/\$d)\"; exit 1; }
        done"
    check "setup-dirs: destination configs root:<rsyslog group> 0640" bash -c "
        for f in '$R'/etc/qumulo-audit-broker/*.toml*; do
            [ \"\$(stat -c '%a %U:%G' \"\$f\")\" = '640 root:$ng' ] || { stat -c '%a %U:%G %n' \"\$f\"; exit 1; }
        done"
    QAB_ROOT="$R" "$R/usr/libexec/qumulo-audit-broker/setup-dirs" --print-user >"$W/user1.txt"
    echo '$PrivDropToUser nobody' >"$R/etc/rsyslog.d/05-privdrop.conf"
    cp /etc/rsyslog.conf "$R/etc/rsyslog.conf" 2>/dev/null || true
    QAB_ROOT="$R" "$R/usr/libexec/qumulo-audit-broker/setup-dirs" --print-user >"$W/user2.txt"
    check "setup-dirs: detects rsyslog's \$PrivDropToUser (root without it)" bash -c "[ \"\$(cat '$W/user1.txt')\" = root:root ] && [ \"\$(cat '$W/user2.txt')\" = 'nobody:$ng' ]"
else
    skip "setup-dirs" "needs root"
fi

# ---------------------------------------------------------------------------------------------
# Optional: real dpkg -i / -r / -P on this machine
# ---------------------------------------------------------------------------------------------
if [ -n "${QAB_TEST_DPKG:-}" ] && [ "$(id -u)" = 0 ]; then
    if dpkg -s qumulo-audit-broker >/dev/null 2>&1; then
        skip "dpkg install cycle" "qumulo-audit-broker is already installed here"
    else
        dpkg -i "$DEB" >"$W/dpkg-i.log" 2>&1
        check "dpkg -i: installs, configures, fires rsyslog's trigger" bash -c "dpkg -s qumulo-audit-broker | grep -q 'Status: install ok installed' && grep -q 'Processing triggers for rsyslog' '$W/dpkg-i.log'"
        check "dpkg -i: this machine's rsyslog configuration still validates (rsyslogd -N1)" rsyslogd -N1
        check "dpkg -i: directories created" test -d /var/spool/qumulo-audit-broker/queue -a -d /var/lib/qumulo-audit-broker/dead-letter -a -d /var/log/qumulo-audit-broker
        dpkg -r qumulo-audit-broker >"$W/dpkg-r.log" 2>&1
        check "dpkg -r: fires rsyslog's trigger, conffile stays, rsyslogd -N1 still valid" bash -c "grep -q 'Processing triggers for rsyslog' '$W/dpkg-r.log' && [ -f /etc/rsyslog.d/10-qumulo-audit-broker.conf ] && rsyslogd -N1"
        dpkg -P qumulo-audit-broker >"$W/dpkg-p.log" 2>&1
        check "dpkg -P: configuration and empty directories gone" bash -c "[ ! -e /etc/rsyslog.d/10-qumulo-audit-broker.conf ] && [ ! -e /etc/qumulo-audit-broker ] && [ ! -e /var/log/qumulo-audit-broker ]"
    fi
else
    skip "dpkg -i/-r/-P on this machine" "set QAB_TEST_DPKG=1 (root) to run it"
fi

# ---------------------------------------------------------------------------------------------
# End to end: installed package, unprivileged rsyslogd, two clusters, two destinations
# ---------------------------------------------------------------------------------------------
R=$(new_root e2e)
BIN="$R/usr/libexec/rsyslog/qumulo-audit-broker"
if ! "$BIN" omprog --help >/dev/null 2>&1; then
    fail "e2e: installed binary has an 'omprog' subcommand" "not yet: the end-to-end checks need qumulo-audit-broker omprog"
    finish
fi
pass "e2e: installed binary has an 'omprog' subcommand"

# `check` on every shipped destination config, in a root of its own (`check` creates nothing
# without --connect, but the unprivileged e2e run must own everything in its root).
RC=$(new_root check)
RCBIN="$RC/usr/libexec/rsyslog/qumulo-audit-broker"
printf 'test-hec-token-0123\n' >"$RC/etc/qumulo-audit-broker/hec.token"
printf 'test-password\n' >"$RC/etc/qumulo-audit-broker/es.password"
printf 'test-password\n' >"$RC/etc/qumulo-audit-broker/amqp.password"
printf 'test-password\n' >"$RC/etc/qumulo-audit-broker/kafka.password"
chmod 0640 "$RC/etc/qumulo-audit-broker/hec.token" "$RC/etc/qumulo-audit-broker/es.password" "$RC/etc/qumulo-audit-broker/amqp.password" \
    "$RC/etc/qumulo-audit-broker/kafka.password"
if command -v openssl >/dev/null 2>&1; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=qab-test-ca -keyout "$W/ca.key" \
        -out "$RC/etc/qumulo-audit-broker/elasticsearch-ca.pem" >/dev/null 2>&1
fi
# `check` resolves syslog addresses even without --connect; example.com names do not resolve here.
sed -i 's/^address = "[^"]*:\([0-9]*\)"/address = "127.0.0.1:\1"/' "$RC"/etc/qumulo-audit-broker/syslog-*.toml.example
for f in "$RC"/etc/qumulo-audit-broker/*.toml "$RC"/etc/qumulo-audit-broker/*.toml.example; do
    check "check --config: shipped ${f##*/} is accepted by the installed binary" "$RCBIN" check --config "$f"
done

printf 'test-hec-token-0123\n' >"$R/etc/qumulo-audit-broker/hec.token"
chmod 0640 "$R/etc/qumulo-audit-broker/hec.token"

# Ports: two clusters, one mock HEC.
read -r P1 P2 P3 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
D="$R/etc/qumulo-audit-broker/rsyslog.d"
enable "$R" 30-clusters.conf.example
enable "$R" 21-dest-splunk-hec.conf.example
sed -i -e "s/port=\"10514\"/address=\"127.0.0.1\" port=\"$P1\"/" -e "s/port=\"10515\"/address=\"127.0.0.1\" port=\"$P2\"/" "$D/30-clusters.conf"
cp "$R/etc/qumulo-audit-broker/splunk-hec.toml.example" "$R/etc/qumulo-audit-broker/splunk-hec.toml"
sed -i "s#^url = .*#url = \"http://127.0.0.1:$P3/services/collector/event\"#" "$R/etc/qumulo-audit-broker/splunk-hec.toml"
RUN_USER=root
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
    RUN_USER=nobody
    QAB_ROOT="$R" QAB_RSYSLOG_USER=nobody "$R/usr/libexec/qumulo-audit-broker/setup-dirs" >/dev/null 2>&1
    chown "root:$(id -gn nobody)" "$R/etc/qumulo-audit-broker/hec.token"
    chown nobody "$R/work"
fi
for d in var/spool/qumulo-audit-broker/queue var/spool/qumulo-audit-broker/journal var/lib/qumulo-audit-broker/dead-letter var/log/qumulo-audit-broker; do mkdir -p "$R/$d"; done
mkdir -p "$W/run"
[ "$RUN_USER" = nobody ] && chown nobody "$W/run" "$R/work"
chmod 0755 "$R"
M=$(main_conf "$R" minimal)
echo "INFO e2e: rsyslogd as $RUN_USER, cluster 'prod' on 127.0.0.1:$P1, cluster 'archive' on 127.0.0.1:$P2, HEC mock on 127.0.0.1:$P3"
echo "INFO e2e: enabled 30-clusters.conf and 21-dest-splunk-hec.conf; destinations: file (shipped) + splunk-hec (example)"
check "e2e: rsyslogd -N1 on the end-to-end configuration" n1 "$M"

# Mock Splunk HEC: records auth header and events; stops by itself after 180 s.
cat >"$W/hec_mock.py" <<'PY'
import gzip, json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, out = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text, dec, pos, events = body.decode("utf-8", "replace"), json.JSONDecoder(), 0, []
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            obj, pos = dec.raw_decode(text, pos)
            events.append(obj)
        with lock, open(out, "a") as f:
            for e in events:
                f.write(json.dumps({"path": self.path, "auth": self.headers.get("Authorization"), "hec": e}) + "\n")
        reply = b'{"text":"Success","code":0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", port), H)
threading.Timer(180, srv.shutdown).start()
srv.serve_forever()
PY
python3 "$W/hec_mock.py" "$P3" "$W/hec-events.ndjson" &
MOCK_PID=$!

if [ "$RUN_USER" = nobody ]; then
    runuser -u nobody -- rsyslogd -n -f "$M" -i "$RSYSLOG_PID_FILE" >"$W/rsyslogd.out" 2>&1 &
else
    rsyslogd -n -f "$M" -i "$RSYSLOG_PID_FILE" >"$W/rsyslogd.out" 2>&1 &
fi
RS_PID=$!
up=0
for _ in $(seq 100); do
    if python3 -c "import socket;[socket.create_connection(('127.0.0.1',p),0.2).close() for p in ($P1,$P2,$P3)]" 2>/dev/null; then up=1; break; fi
    sleep 0.1
done
if [ "$up" = 1 ]; then pass "e2e: rsyslogd listens on both cluster ports"; else fail "e2e: rsyslogd listens on both cluster ports" "$(tail -n 5 "$W/rsyslogd.out" | tr '\n' ' ')"; finish; fi

python3 - "$P1" "$P2" <<'PY'
import socket, sys
def send(port, lines):
    with socket.create_connection(("127.0.0.1", int(port))) as s:
        s.sendall("".join("<134>" + l.rstrip("\n") + "\n" for l in lines).encode())
send(sys.argv[1], open("examples/syslog-csv.log").read().splitlines())
send(sys.argv[2], open("examples/syslog-json.log").read().splitlines())
PY
N1=$(wc -l <examples/syslog-csv.log) N2=$(wc -l <examples/syslog-json.log)
WANT=$((N1 + N2))
echo "INFO e2e: sent $N1 syslog-CSV lines as cluster prod, $N2 syslog-JSON lines as cluster archive"
FILE_OUT="$R/var/log/qumulo-audit-broker/events.ndjson"
for _ in $(seq 300); do
    a=$(cat "$FILE_OUT" 2>/dev/null | wc -l) b=$(cat "$W/hec-events.ndjson" 2>/dev/null | wc -l)
    [ "$a" -ge "$WANT" ] && [ "$b" -ge "$WANT" ] && break
    sleep 0.2
done
echo "INFO e2e: file destination has $(cat "$FILE_OUT" 2>/dev/null | wc -l) events, HEC mock has $(cat "$W/hec-events.ndjson" 2>/dev/null | wc -l)"

check "e2e: file destination received every event, per cluster (prod $N1, archive $N2)" python3 - "$FILE_OUT" "$N1" "$N2" <<'PY'
import collections, json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
c = collections.Counter(e["cluster"] for e in evs)
want = {"prod": int(sys.argv[2]), "archive": int(sys.argv[3])}
assert dict(c) == want, f"clusters {dict(c)} != {want}"
assert all(e.get("id") for e in evs), "event without id"
PY
check "e2e: HEC destination received every event with 'Authorization: Splunk <token>', index and sourcetype from the example" \
    python3 - "$W/hec-events.ndjson" "$N1" "$N2" <<'PY'
import collections, json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["auth"] == "Splunk test-hec-token-0123" for r in recs), {r["auth"] for r in recs}
assert all(r["path"] == "/services/collector/event" for r in recs), {r["path"] for r in recs}
assert all(r["hec"].get("index") == "qumulo" and r["hec"].get("sourcetype") == "qumulo:audit" for r in recs)
c = collections.Counter(r["hec"]["event"]["cluster"] for r in recs)
want = {"prod": int(sys.argv[2]), "archive": int(sys.argv[3])}
assert dict(c) == want, f"clusters {dict(c)} != {want}"
PY
check "e2e: both destinations carry the same event ids (the uuid made once, before the queues)" python3 - "$FILE_OUT" "$W/hec-events.ndjson" <<'PY'
import json, sys
a = sorted(json.loads(l)["id"] for l in open(sys.argv[1]))
b = sorted(json.loads(l)["hec"]["event"]["id"] for l in open(sys.argv[2]))
assert a == b, "ids differ"
assert len(set(a)) == len(a), "duplicate ids"
PY
if [ "$RUN_USER" = nobody ]; then
    check "e2e: events written as rsyslog's (unprivileged) user" bash -c "[ \"\$(stat -c %U '$FILE_OUT')\" = nobody ]"
fi

# logrotate: move the file destination's output away, HUP rsyslogd (what the shipped logrotate
# postrotate does); rsyslog forwards HUP to the program (hup.signal), which must reopen its file.
mv "$FILE_OUT" "$FILE_OUT.1"
kill -HUP "$(cat "$RSYSLOG_PID_FILE")"
sleep 1
python3 - "$P1" <<'PY'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    s.sendall(open("examples/syslog-csv.log", "rb").read().splitlines()[3].join([b"<134>", b"\n"]))
PY
for _ in $(seq 100); do [ -s "$FILE_OUT" ] && break; sleep 0.1; done
check "e2e: logrotate: after mv + HUP the file destination writes a new events.ndjson" \
    bash -c "[ \"\$(wc -l < '$FILE_OUT')\" = 1 ] && [ \"\$(wc -l < '$FILE_OUT.1')\" = $WANT ]"

kill "$(cat "$RSYSLOG_PID_FILE")" 2>/dev/null
stopped=0
for _ in $(seq 150); do
    if ! kill -0 "$RS_PID" 2>/dev/null; then stopped=1; break; fi
    sleep 0.1
done
if [ "$stopped" = 1 ]; then pass "e2e: rsyslogd stops within 15 s of SIGTERM"; else fail "e2e: rsyslogd stops within 15 s of SIGTERM"; fi
check "e2e: no omprog child left running" bash -c "! pgrep -f '[q]umulo-audit-broker omprog --config $R/' >/dev/null"
check "e2e: no undelivered queue files left in the spool" bash -c "! ls '$R/var/spool/qumulo-audit-broker/queue/' | grep -q ."
check "e2e: clean shutdown: rsyslogd reported no error, cancellation or possible loss" \
    bash -c "! grep -Ei 'error|cancel|lost|discard' '$W/rsyslogd.out'"
check "e2e: each destination's program logged its stats to its output= log, no ERROR, no panic" \
    bash -c "for d in file splunk-hec; do f='$R/var/log/qumulo-audit-broker/'\$d.log; grep -q 'stats: lines_in=' \$f || { echo \"\$f: no stats line\"; exit 1; }; ! grep -Eiq ' ERROR|panic' \$f || { cat \$f; exit 1; }; done"
rm -f "$RSYSLOG_PID_FILE"
finish
