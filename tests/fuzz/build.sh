#!/usr/bin/env bash
# Builds the libFuzzer harnesses: tests/fuzz/build.sh OUT_DIR [NAME...] (default: every harness)
# makes OUT_DIR/NAME_fuzz for NAME in http_parser, serialize.
#
# A script, not meson: libFuzzer needs clang (-fsanitize=fuzzer), while the main meson tree is
# built with g++, and a second meson tree with CXX=clang++ would configure the whole library
# for two harnesses that need one .cpp and a header. Each harness is one clang++ command; it is
# rebuilt only when one of its inputs is newer than the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

[[ $# -ge 1 ]] || { echo "usage: tests/fuzz/build.sh OUT_DIR [http_parser|serialize ...]" >&2; exit 2; }
out=$1
shift
names=("$@")
((${#names[@]})) || names=(http_parser serialize)
mkdir -p "$out"

CXX=${FUZZ_CXX:-clang++}
FLAGS=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Wall -Wextra -Werror -I runtime -I io -I sched -I pool -I examples/http -I tests/fuzz)

for name in "${names[@]}"; do
  case $name in
    http_parser) sources=(tests/fuzz/http_parser_fuzz.cpp examples/http/http_parser.cpp)
                 deps=(examples/http/http_parser.hpp) ;;
    serialize) sources=(tests/fuzz/serialize_fuzz.cpp)
               deps=(pool/weft/pool/serialize.hpp io/weft/io/fd.hpp) ;;
    *) echo "build.sh: no harness named '$name' (http_parser, serialize)" >&2; exit 2 ;;
  esac
  bin=$out/${name}_fuzz
  stale=0
  [[ -x $bin ]] || stale=1
  for f in "${sources[@]}" "${deps[@]}" tests/fuzz/fuzz_check.hpp tests/fuzz/seeds_flag.hpp tests/fuzz/build.sh; do
    [[ $f -nt $bin ]] && stale=1
  done
  if ((stale)); then
    echo "build.sh: building $bin" >&2
    # Into a temporary name: a build running beside this one (or the fuzzer) keeps its binary.
    "$CXX" "${FLAGS[@]}" "${sources[@]}" -o "$bin.tmp.$$"
    mv "$bin.tmp.$$" "$bin"
  fi
done
