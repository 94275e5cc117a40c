#!/usr/bin/env bash
# Checks that third_party/glommio is glommio 0.9.0 as published on crates.io plus the patches
# of third_party/glommio-patches/series, in order, and nothing else.
#
#   third_party/check-glommio.sh            # exit 0: the tree is upstream + the series
#
# Upstream comes from crates.io through cargo (a throwaway project that depends on
# glommio =0.9.0, so its source lands in cargo's registry); the published crate carries
# benches, tests and examples that the vendored copy leaves out.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vendored="$here/glommio"
patches="$here/glommio-patches"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The published source.
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<'EOF'
[package]
name = "fetch-glommio"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
glommio = "=0.9.0"
[workspace]
EOF
echo 'fn main() {}' >"$work/fetch/src/main.rs"
(cd "$work/fetch" && cargo fetch --quiet)
upstream="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/glommio-0.9.0 | head -1)"
[ -d "$upstream" ] || { echo "check-glommio: glommio 0.9.0 did not arrive from crates.io" >&2; exit 2; }

# Published, trimmed as vendored, then patched.
cp -r "$upstream" "$work/tree"
(cd "$work/tree" && rm -rf benches tests examples Cargo.toml.orig \
    liburing/debian liburing/examples liburing/man liburing/test liburing/liburing.spec liburing/make-debs.sh)
while read -r p; do
    [ -n "$p" ] || continue
    (cd "$work/tree" && patch -p1 --quiet --no-backup-if-mismatch <"$patches/$p") \
        || { echo "check-glommio: $p does not apply" >&2; exit 1; }
done <"$patches/series"

if diff -r -x PATCHES.md -x Cargo.lock -x target -x .cargo-ok "$work/tree" "$vendored" >"$work/diff"; then
    echo "check-glommio: third_party/glommio is glommio 0.9.0 plus $(grep -c . "$patches/series") patches"
else
    echo "check-glommio: third_party/glommio differs from glommio 0.9.0 plus the series:" >&2
    head -40 "$work/diff" >&2
    echo "(a change to the vendored tree needs its patch in third_party/glommio-patches/ and series)" >&2
    exit 1
fi
