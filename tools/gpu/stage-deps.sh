#!/usr/bin/env bash
# Run HERE (Debian, with network) before a GPU-machine call: stages the packages that the
# offline GPU machine lacks into ignored folders that the call carries:
#   .deps/toml  toml++ (library + headers + CMake config)
#   .deps/sys   PCRE2, ICU, cmark-gfm and protobuf headers and libraries, and protoc
#               (used only if the machine has no PCRE2 headers: launch/env.sh)
#   .deps/h5tools  Debian's h5dump/h5ls with their HDF5 library (the GPU image has no
#                  hdf5-tools; run with LD_LIBRARY_PATH=.deps/h5tools/usr/lib/x86_64-linux-gnu)
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download libtomlplusplus-dev libtomlplusplus3 libpcre2-dev libpcre2-8-0 libicu-dev libicu72 \
  hdf5-tools libhdf5-103-1 libsz2 libaec0 libcmark-gfm-dev libcmark-gfm0.29.0.gfm.6 libcmark-gfm-extensions-dev \
  libcmark-gfm-extensions0.29.0.gfm.6 libprotobuf-dev libprotobuf32 libprotobuf-lite32 protobuf-compiler \
  libprotoc32 2>/dev/null)
rm -rf .deps/toml .deps/sys .deps/h5tools && mkdir -p .deps
for f in "$tmp"/libtomlplusplus*.deb; do dpkg -x "$f" .deps/toml; done
for f in "$tmp"/hdf5-tools*.deb "$tmp"/libhdf5-103*.deb "$tmp"/libsz2*.deb "$tmp"/libaec0*.deb; do
  dpkg -x "$f" .deps/h5tools
done
rm -rf .deps/h5tools/usr/share
for f in "$tmp"/libpcre2*.deb "$tmp"/libicu*.deb "$tmp"/libcmark-gfm*.deb "$tmp"/libproto*.deb "$tmp"/protobuf*.deb; do
  dpkg -x "$f" .deps/sys
done
find .deps/sys -name '*.a' -delete
# protoc stays (the build generates the TensorBoard event code with it; its libraries are in
# .deps/sys's lib directory, which launch/env.sh puts on LD_LIBRARY_PATH).
find .deps/sys/usr/bin -type f ! -name protoc -delete
rm -rf .deps/sys/usr/share .deps/sys/usr/sbin .deps/sys/usr/lib/x86_64-linux-gnu/icu
(cd .deps/sys/usr/lib/x86_64-linux-gnu && rm -f libicui18n* libicuio* libicutest* libicutu* libpcre2-16* libpcre2-32* libpcre2-posix*)
rm -rf "$tmp"
du -sh .deps/toml .deps/sys .deps/h5tools
