#!/usr/bin/env bash
# Installs every Debian 12 package that r1dist's build, tests and demo need.
# Idempotent; run as root. Debian packages only (npm packages come with the tokenizer work).
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libspdlog-dev libfmt-dev
  libcxxopts-dev
  libtomlplusplus-dev
  nlohmann-json3-dev
  libgtest-dev googletest
  libpcre2-dev libutf8proc-dev
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "HINT: run as root (sudo bash tools/install-deps.sh)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
