#!/usr/bin/env bash
# weft: model-checks the executors' parking / wake-up protocols with spin (see README.md).
#
#   sched/model/check.sh          the CI set (about 25 s of CPU, spread over the cores)
#   sched/model/check.sh --full   bigger configurations as well (a few minutes)
#
# Exit status: 0 when every property holds where it must and spin rejects every injected
# bug and reproduces every known issue; 1 otherwise; 2 when spin or a C compiler is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
command -v spin >/dev/null 2>&1 || { echo "check.sh: spin not found (apt-get install spin)"; exit 2; }
command -v "$cc" >/dev/null 2>&1 || { echo "check.sh: no C compiler ($cc)"; exit 2; }

full=0
[ "${1:-}" = "--full" ] && full=1
opt=-O0                  # compiling pan.c dominates for the small configurations
hash=-w21
[ $full = 1 ] && opt=-O2 && hash=-w26

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
jobs_max=$(nproc 2>/dev/null || echo 2)
n=0

# check MODEL MODE EXPECT [spin -D options...]   (runs in the background; see report)
#   MODE:   safety (assertions, invalid end states) or live (the LTL claim, weak fairness);
#           live-A is live with assertions off (so that a bug shows as an acceptance cycle).
#   EXPECT: holds, or violated (an injected bug or a known issue: spin must find it).
check() {
  n=$((n + 1))
  mkdir "$work/$n"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  run_check "$work/$n" "$@" &
}

run_check() {
  local dir=$1 model=$2 mode=$3 expect=$4
  shift 4
  cp "$here/$model" "$dir/"
  local start=$SECONDS result
  result=$(
    cd "$dir" || exit 3
    spin "$@" -a "$model" >spin.log 2>&1 || { echo "spin failed: $(tail -3 spin.log)"; exit 3; }
    case $mode in
      safety) "$cc" -w $opt -DNOCLAIM -DSAFETY -o pan pan.c && ./pan -m1000000 $hash >pan.log 2>&1 ;;
      live)   "$cc" -w $opt -DNFAIR=3 -o pan pan.c && ./pan -a -f -m1000000 $hash >pan.log 2>&1 ;;
      live-A) "$cc" -w $opt -DNFAIR=3 -o pan pan.c && ./pan -a -f -A -m1000000 $hash >pan.log 2>&1 ;;
    esac
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.log | head -1)
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' pan.log | head -1)
    what=$(sed -n 's/^pan:1: \(.*\) (at depth.*/\1/p' pan.log | head -1)
    if [ "${errors:-}" = 0 ] && grep -q "Search not completed\|max search depth too small" pan.log; then
      echo "incomplete search"
      exit 3
    fi
    echo "${errors:-?} ${states:-?} ${what:-}"
  )
  local status=$? errors states what verdict
  read -r errors states what <<<"$result"
  if [ $status -ne 0 ]; then
    verdict=FAIL
    what=$result
  elif [ "$expect" = holds ] && [ "$errors" = 0 ]; then
    verdict=ok
  elif [ "$expect" = violated ] && [ "$errors" != 0 ] && [ "$errors" != "?" ]; then
    verdict=ok
  else
    verdict=FAIL
  fi
  echo $verdict >"$dir/verdict"
  printf '%-4s %-15s %-7s %-8s %-52s %9s states, errors: %s %s(%ds)\n' "$verdict" "$model" \
    "$mode" "$expect" "$*" "$states" "$errors" "${what:+[$what] }" $((SECONDS - start)) >"$dir/line"
}

header() {
  n=$((n + 1))
  mkdir "$work/$n"
  echo "== $*" >"$work/$n/line"
}

header "multi-thread executor: parking.pml"
check parking.pml safety holds   -DN=2 -DK=3
check parking.pml live   holds   -DN=2 -DK=3
check parking.pml safety holds   -DN=3 -DK=1
check parking.pml live   holds   -DN=3 -DK=1
for bug in BUG_NO_RECHECK BUG_CHECK_BEFORE_REGISTER BUG_DEC_AFTER_CHECK; do
  check parking.pml safety violated -DN=2 -DK=2 -D$bug
done
check parking.pml live-A violated -DN=2 -DK=2 -DBUG_CHECK_BEFORE_REGISTER
# Found by this model and fixed (README.md): a task that never suspends kept a task waiting
# that a parked worker could run. -DUNFIXED is the code before the fix.
check parking.pml safety violated -DN=2 -DK=3 -DHOG -DUNFIXED
check parking.pml safety holds    -DN=2 -DK=3 -DHOG

header "single-lock executor: single_lock.pml"
check single_lock.pml safety holds -DN=3 -DK=2 -DFN_RETURNS
check single_lock.pml live   holds -DN=3 -DK=2 -DFN_RETURNS
for bug in BUG_NO_RECHECK BUG_CHECK_BEFORE_REGISTER; do
  check single_lock.pml safety violated -DN=2 -DK=2 -DFN_RETURNS -D$bug
done
check single_lock.pml live-A violated -DN=2 -DK=2 -DFN_RETURNS -DBUG_CHECK_BEFORE_REGISTER
# Found by this model and fixed (README.md): weft::blocking dropped the lock without waking a
# parked thread. -DUNFIXED is the code before the fix.
check single_lock.pml safety violated -DN=3 -DK=2 -DUNFIXED
check single_lock.pml safety holds    -DN=3 -DK=2

if [ $full = 1 ]; then
  header "bigger configurations, and every bug also against the LTL claim"
  for bug in BUG_NO_RECHECK BUG_DEC_AFTER_CHECK; do
    check parking.pml live-A violated -DN=2 -DK=2 -D$bug
  done
  check single_lock.pml live-A violated -DN=2 -DK=2 -DFN_RETURNS -DBUG_NO_RECHECK
  check parking.pml safety holds -DN=3 -DK=2
  check parking.pml live   holds -DN=3 -DK=2
  check parking.pml safety holds -DN=2 -DK=4
  check parking.pml live   holds -DN=2 -DK=4
  check parking.pml safety holds -DN=3 -DK=2 -DHOG
  check single_lock.pml safety holds -DN=3 -DK=3 -DFN_RETURNS
  check single_lock.pml live   holds -DN=3 -DK=3 -DFN_RETURNS
  check single_lock.pml safety holds -DN=3 -DK=3
  check single_lock.pml live   holds -DN=3 -DK=3 -DFN_RETURNS
fi

wait
failures=0
checks=0
for i in $(seq 1 $n); do
  cat "$work/$i/line" 2>/dev/null || { echo "FAIL (check $i left no result)"; failures=$((failures + 1)); }
  if [ -f "$work/$i/verdict" ]; then
    checks=$((checks + 1))
    [ "$(cat "$work/$i/verdict")" = ok ] || failures=$((failures + 1))
  fi
done
if [ $failures -ne 0 ]; then
  echo "check.sh: $failures check(s) FAILED"
  exit 1
fi
echo "check.sh: all $checks checks as expected"
