#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine (what CI runs):
#   install    Debian packages + npm packages + the R1 tokenizer (tools/install-deps.sh)
#   build      the release build: both layers, the binary, the three test binaries
#   asan       the torch-free core and its tests under AddressSanitizer + UBSan (clang when
#              installed), built with R1DIST_TORCH=OFF: it also proves that the core builds
#              with no torch at all; then each libFuzzer target over its committed corpus and
#              a fixed-seed run of a fixed number of inputs (tools/fuzz.sh replay, smoke)
#   ctest      every test of the release build; labels core, torch, e2e, layers, slurm (the
#              "Label Time Summary" at its end gives each one's time)
# Each phase prints its wall time; the summary at the end repeats them.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -a phases=()
phase() {  # phase NAME COMMAND...: runs it, records its wall time, returns its status
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "=== ${name}"
  "$@" || rc=$?
  phases+=("$(printf '%-8s %4d s%s' "$name" $((SECONDS - t0)) "$([ $rc = 0 ] || echo "  (failed: $rc)")")")
  echo "=== ${name}: $((SECONDS - t0)) s"
  return $rc
}

# (Functions run by `phase` run where errexit is off: each step checks its own status.)
core_asan() {
  # clang compiles the sanitized core about 6x faster than GCC 12 (CMakeLists.txt, R1DIST_ASAN).
  local cc=()
  if command -v clang++ >/dev/null; then cc=(CC=clang CXX=clang++); fi
  env "${cc[@]}" BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo BUILD_TARGETS=r1dist_core_tests \
    bash tools/build.sh -DR1DIST_ASAN=ON -DR1DIST_TORCH=OFF || return
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ./build-asan/tests/r1dist_core_tests --gtest_brief=1 --gtest_filter='-TokenizerR1.TenMegabyteLine' || return
  bash tools/check_layers.sh build-asan || return
  # The libFuzzer targets (fuzz/, clang only) from the same sanitizer objects: every input of
  # the committed corpus (which holds every input that once failed), then a fixed number of
  # inputs from a fixed seed. Deterministic: exploring runs stay out of CI (docs/RELIABILITY.md).
  if command -v clang++ >/dev/null; then
    bash tools/fuzz.sh build >/dev/null && bash tools/fuzz.sh replay && bash tools/fuzz.sh smoke
  fi
}

run_ctest() {
  # One run over every binary; the e2e tests that launch MPI hold the "mpi" resource lock and
  # both cores (tests/CMakeLists.txt). CTest's label summary gives each binary's time.
  (cd build && ctest --output-on-failure -j "$(nproc)")
}

phase install bash tools/install-deps.sh
source launch/env.sh
phase build bash tools/build.sh
if [ "${R1DIST_SKIP_ASAN:-0}" != 1 ]; then phase asan core_asan; fi
status=0
phase ctest run_ctest || status=$?
echo "=== phase times"
printf '  %s\n' "${phases[@]}"
exit $status
