#!/bin/sh
# Builds the Tokio references (tokio_micro, tokio_threads) offline from Debian's crate registry,
# entirely under OUTDIR: the crate is copied there (cargo writes Cargo.lock beside Cargo.toml),
# CARGO_HOME points there with a source replacement of crates.io by /usr/share/cargo/registry,
# and so does the target directory. Nothing is fetched and nothing is written to the source tree.
#
#   bench/reference/tokio/build.sh OUTDIR     prints the directory holding the two programs
#
# Exit 3 with a one-line reason when Debian's cargo or librust-tokio-dev is missing (the caller
# reports the reference as skipped); any other failure is a build error.
set -eu
mkdir -p "${1:?usage: build.sh OUTDIR}"
out=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")" && pwd)
registry=/usr/share/cargo/registry
# Debian's cargo and rustc: a rustup toolchain earlier in PATH is another compiler than the one
# Debian's crates are packaged for.
cargo=/usr/bin/cargo
if [ ! -x "$cargo" ] || ! ls -d "$registry"/tokio-1.* >/dev/null 2>&1; then
  echo "cargo/librust-tokio-dev not installed (apt-get install cargo librust-tokio-dev)"
  exit 3
fi
mkdir -p "$out/crate" "$out/cargo-home"
cp "$src/Cargo.toml" "$src/micro.rs" "$src/threads.rs" "$src/options.rs" "$src/workloads.rs" "$out/crate/"
cat >"$out/cargo-home/config.toml" <<CONFIG
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "$registry"
[net]
offline = true
CONFIG
CARGO_HOME="$out/cargo-home" CARGO_TARGET_DIR="$out/target" RUSTC=/usr/bin/rustc \
  "$cargo" build --release --offline --quiet --manifest-path "$out/crate/Cargo.toml" >&2
echo "$out/target/release"
