#!/usr/bin/env bash
# libFuzzer targets of the core's parsers (fuzz/, docs/RELIABILITY.md), in the sanitizer build
# (build-asan, clang, ASan + UBSan):
#   bash tools/fuzz.sh build                 build every target
#   bash tools/fuzz.sh replay                every input of fuzz/corpus/ once, each target (CI)
#   bash tools/fuzz.sh smoke                 each target a fixed number of inputs from a fixed
#                                            seed, starting from its corpus (CI): the same inputs
#                                            on every run of the same commit
#   bash tools/fuzz.sh run TARGET SECONDS    one long exploring run (random seed); the grown
#                                            corpus stays in build-asan/fuzz-corpus/TARGET,
#                                            findings in build-asan/fuzz-findings
# A crash, a sanitizer report or an exception other than r1dist::Error fails the run; the input
# that caused it is written to build-asan/fuzz-findings/. Exploring runs stay out of CI (a
# random search must never decide whether a commit lands): commit what they find to
# fuzz/corpus/TARGET/ as regression-*, and every later CI run replays it.
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

# Inputs per target in the fixed-seed smoke run: about 4 s each on 2 cores (fuzz_checkpoint
# writes a real HDF5 file per input).
smoke_runs() { case $1 in fuzz_checkpoint) echo 100 ;; fuzz_tokenizer_json | fuzz_tokenizer_text) echo 2500 ;; *) echo 10000 ;; esac; }

# run_one TARGET WORK_DIR LABEL [extra libFuzzer flags]: the target over WORK_DIR (grown) and
# its seed corpus fuzz/corpus/TARGET (read only).
run_one() {
  local t=$1 work=$2 label=$3
  shift 3
  local seeds=fuzz/corpus/${t#fuzz_} found=$B/fuzz-findings
  mkdir -p "$work" "$found"
  [ -x "$B/fuzz/$t" ] || { echo "fuzz: $B/fuzz/$t is not built (bash tools/fuzz.sh build)"; return 2; }
  echo "=== $t: $label"
  local log=$found/$t.log rc=0
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$B/fuzz/$t" "$work" "$seeds" -rss_limit_mb=2048 -max_len=65536 -timeout=20 \
    -artifact_prefix="$found/$t-" -print_final_stats=1 "$@" > "$log" 2>&1 || rc=$?
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|ERROR|SUMMARY|deadly|uncaught|what\(\)|Test unit written" "$log" || true
  [ $rc = 0 ] || echo "fuzz: $t failed (exit $rc); the whole log is $log"
  return $rc
}

# A fresh scratch corpus per deterministic run, so that an earlier exploring run's grown
# corpus never changes what CI executes.
fresh() { local d=$B/fuzz-scratch/$1; rm -rf "$d"; mkdir -p "$d"; echo "$d"; }

case ${1:-smoke} in
  build) build ;;
  replay)
    status=0
    for t in $(targets); do run_one "$t" "$(fresh "$t")" "replay of fuzz/corpus/${t#fuzz_}" -runs=0 || status=1; done
    exit $status
    ;;
  smoke)
    status=0
    for t in $(targets); do
      n=$(smoke_runs "$t")
      run_one "$t" "$(fresh "$t")" "$n inputs from seed 1" -seed=1 -runs="$n" || status=1
    done
    exit $status
    ;;
  run) run_one "$2" "$B/fuzz-corpus/${2#fuzz_}" "${3} s, exploring" -max_total_time="$3" ;;
  *) echo "usage: tools/fuzz.sh build | replay | smoke | run TARGET SECONDS"; exit 2 ;;
esac
