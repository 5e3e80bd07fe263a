#!/bin/sh
# Build the release binary and the .deb and .rpm packages into target/packages/.
#
#   packaging/build.sh            static musl binary if the target can be built, else glibc
#   QAB_TARGET=x86_64-unknown-linux-gnu packaging/build.sh   force a glibc build
#   packaging/build.sh --deb-only | --rpm-only
#
# Installs what it needs when missing: the musl rust target (rustup), musl-gcc
# (Debian package musl-tools, needed by ring's C code and librdkafka), cargo-deb (cargo install
# --locked) and a patched cargo-generate-rpm (below). Prints the packages' paths.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
want_deb=1 want_rpm=1
case "${1:-}" in
    --deb-only) want_rpm=0 ;;
    --rpm-only) want_deb=0 ;;
    "") ;;
    *) echo "usage: $0 [--deb-only|--rpm-only]" >&2; exit 2 ;;
esac

say() { echo "build.sh: $*" >&2; }

musl=x86_64-unknown-linux-musl
target="${QAB_TARGET:-}"
if [ -z "$target" ]; then
    target=$musl
    if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        say "adding rust target $musl"
        rustup target add "$musl" >&2 || target=
    fi
    if [ -n "$target" ] && ! command -v musl-gcc >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing musl-tools (musl-gcc)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2 || target=
        else
            target=
        fi
    fi
    if [ -z "$target" ]; then
        target=x86_64-unknown-linux-gnu
        say "musl target unavailable: building a dynamically linked glibc binary ($target)"
    fi
fi

if [ "$want_deb" = 1 ] && ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb"
    cargo install --locked cargo-deb >&2
fi

# cargo-generate-rpm: the rpm must own its directories (`dir = true` assets in Cargo.toml).
# Release 0.21.1 parses such assets but cannot build them (it hands rpm's with_file() an empty
# source path); upstream fixed it after the release (PR #153, not on crates.io, and GitHub may be
# out of reach). So build.sh builds 0.21.1's crates.io source, fetched by cargo, with
# packaging/rpm/cargo-generate-rpm-dir-assets.patch (with_dir_entry() for them) into
# target/packaging/tools, once. CGR_VERSION must match the patch.
CGR_VERSION=0.21.1
cgr="$top/target/packaging/tools/bin/cargo-generate-rpm"
if [ "$want_rpm" = 1 ] && [ ! -x "$cgr" ]; then
    say "building cargo-generate-rpm $CGR_VERSION with directory assets (packaging/rpm/cargo-generate-rpm-dir-assets.patch)"
    fetch="$top/target/packaging/cgr-fetch"
    rm -rf "$fetch" && mkdir -p "$fetch/src"
    printf '[workspace]\n[package]\nname = "cgr-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ncargo-generate-rpm = "=%s"\n' "$CGR_VERSION" >"$fetch/Cargo.toml"
    : >"$fetch/src/lib.rs"
    # cargo fetch downloads it (a dependency without a library: cargo warns, and fetches it) and
    # unpacks it in its registry cache.
    cargo fetch --manifest-path "$fetch/Cargo.toml" >&2
    unpacked=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cargo-generate-rpm-$CGR_VERSION" 2>/dev/null | head -n 1)
    [ -n "$unpacked" ] || { say "cargo fetch did not unpack cargo-generate-rpm $CGR_VERSION"; exit 1; }
    src="$top/target/packaging/cargo-generate-rpm-$CGR_VERSION"
    rm -rf "$src" && cp -r "$unpacked" "$src"
    patch -p1 -d "$src" <packaging/rpm/cargo-generate-rpm-dir-assets.patch >&2
    cargo install --locked --path "$src" --root "$top/target/packaging/tools" >&2
fi

if [ "$target" = "$musl" ]; then
    # librdkafka (rdkafka-sys, Kafka destination) is built by its own ./configure + make, which
    # reads CC, not cc-rs's per-target variables: without this it would compile librdkafka
    # against glibc's headers and link it into the musl binary. HOST_CC keeps anything built
    # for the build machine on gcc. Its C++ half (src-cpp) is compiled by g++ but never linked.
    export CC=musl-gcc HOST_CC=gcc CC_x86_64_unknown_linux_musl=musl-gcc
    # OpenSSL (vendored, for Kafka TLS and SASL SCRAM) needs the kernel headers musl-gcc
    # does not search by default (linux/*.h, asm/*.h).
    export CFLAGS_x86_64_unknown_linux_musl="-idirafter /usr/include -idirafter /usr/include/x86_64-linux-gnu"
fi
say "building release binary for $target"
cargo build --release --locked --target "$target" >&2
bin="$top/target/$target/release/qumulo-audit-broker"
# cargo-deb strips its own copy; cargo-generate-rpm packages the file as is.
strip "$bin"
file "$bin" >&2 || true

# The man page is shipped gzipped (Debian policy 12.1).
mkdir -p target/packaging target/packages
gzip -9n -c packaging/man/qumulo-audit-broker.1 > target/packaging/qumulo-audit-broker.1.gz

if [ "$want_deb" = 1 ]; then
    cargo deb --no-build --target "$target" --output target/packages/ >&2
    ls target/packages/qumulo-audit-broker_*.deb
fi
if [ "$want_rpm" = 1 ]; then
    "$cgr" generate-rpm --target "$target" -o target/packages/ >&2
    ls target/packages/qumulo-audit-broker-*.rpm
fi
