#!/usr/bin/env bash
# libFuzzer targets of the core's parsers (fuzz/, docs/RELIABILITY.md), in the sanitizer build
# (build-asan, clang, ASan + UBSan):
#   bash tools/fuzz.sh build                 build every target
#   bash tools/fuzz.sh smoke [SECONDS]       each target SECONDS (default 15) from its seed corpus (CI)
#   bash tools/fuzz.sh run TARGET SECONDS    one long run; the grown corpus stays in
#                                            build-asan/fuzz-corpus/TARGET, findings in build-asan/fuzz-findings
# A crash, a sanitizer report or an exception other than r1dist::Error fails the run; the input
# that caused it is written to build-asan/fuzz-findings/ (make it a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-asan}
targets() { for f in fuzz/fuzz_*.cpp; do basename "$f" .cpp; done; }

build() {
  local cc=()
  if command -v clang++ >/dev/null; then cc=(CC=clang CXX=clang++); fi
  env "${cc[@]}" BUILD_DIR="$B" BUILD_TYPE=RelWithDebInfo BUILD_TARGETS=r1dist_fuzz \
    bash tools/build.sh -DR1DIST_ASAN=ON -DR1DIST_TORCH=OFF
}

# run TARGET SECONDS [extra libFuzzer flags]
run_one() {
  local t=$1 secs=$2
  shift 2
  local seeds=fuzz/corpus/${t#fuzz_} work=$B/fuzz-corpus/${t#fuzz_} found=$B/fuzz-findings
  mkdir -p "$work" "$found"
  [ -x "$B/fuzz/$t" ] || { echo "fuzz: $B/fuzz/$t is not built (bash tools/fuzz.sh build)"; return 2; }
  echo "=== $t: ${secs} s"
  local log=$found/$t.log rc=0
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$B/fuzz/$t" "$work" "$seeds" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=20 \
    -artifact_prefix="$found/$t-" -print_final_stats=1 "$@" > "$log" 2>&1 || rc=$?
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|ERROR|SUMMARY|deadly|uncaught|what\(\)|Test unit written" "$log" || true
  [ $rc = 0 ] || echo "fuzz: $t failed (exit $rc); the whole log is $log"
  return $rc
}

case ${1:-smoke} in
  build) build ;;
  smoke)
    status=0
    for t in $(targets); do run_one "$t" "${2:-15}" || status=1; done
    exit $status
    ;;
  run) run_one "$2" "$3" ;;
  *) echo "usage: tools/fuzz.sh build | smoke [SECONDS] | run TARGET SECONDS"; exit 2 ;;
esac
