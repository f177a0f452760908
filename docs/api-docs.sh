#!/usr/bin/env bash
# Generates weft's API reference with Doxygen (docs/Doxyfile) into OUT_DIR/html and fails on
# any warning, printing them: every public API must have a doc comment. Used by `./run docs`
# and by the api_docs meson test (so CI runs it).
#
#   docs/api-docs.sh OUT_DIR VERSION [DOXYGEN]
#
# VERSION is meson.build's project version (the reference's PROJECT_NUMBER). Exits 77 (meson's
# "skipped") when doxygen is not installed; `./run test` and `./run docs` install it.
set -euo pipefail
[[ $# -ge 2 && $# -le 3 ]] || { echo "usage: $0 OUT_DIR VERSION [DOXYGEN]" >&2; exit 2; }
out=$1 version=$2 doxygen=${3:-doxygen}
if ! command -v "$doxygen" >/dev/null; then
  echo "api docs: $doxygen is not installed (apt-get install doxygen); skipped" >&2
  exit 77
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)  # absolute: doxygen runs from the source root
log=$out/warnings.log
rm -rf "$out/html"  # no stale pages of symbols that are gone

status=0
(cd "$root" && WEFT_VERSION=$version WEFT_DOCS_OUT=$out "$doxygen" docs/Doxyfile) 2>"$log" ||
  status=$?
if [[ -s $log ]]; then
  cat "$log" >&2
  count=$(grep -cE ': (warning|error): ' "$log" || true)
  echo "api docs: $count warning(s); every public API needs a /// doc comment (what it does," \
    "its errors, its thread-safety), and machinery is hidden as docs/Doxyfile says" >&2
  exit 1
fi
if ((status != 0)); then
  echo "api docs: doxygen failed with status $status" >&2
  exit 1
fi
echo "api docs: no warnings; $out/html/index.html"
