#!/usr/bin/env bash
# Every file r1dist writes goes through the one file layer (include/r1dist/base/fs.h:
# AtomicFile, write_file_atomic, AppendFile, copy_file, replace_dir, rename_path): fails
# naming any other way of writing or renaming a file under src/. The exceptions, each for a reason:
#   src/base/fs.cpp          the layer itself
#   src/base/run_lock.cpp    the run lock's file (an flock, never replaced)
#   src/formats/h5_util.cpp  HDF5 files created in memory (core driver), written by AtomicFile
#   src/formats/metrics.cpp  metrics.h5, appended in place under SWMR while readers watch it
# Usage: tools/check_writers.sh [SOURCE_DIR]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
allowed='^src/(base/fs\.cpp|base/run_lock\.cpp|formats/h5_util\.cpp|formats/metrics\.cpp):'
pattern='std::ofstream|std::fopen|[^_a-z]fopen\(|std::rename|::rename\(|filesystem::rename|filesystem::copy|O_WRONLY|O_CREAT|H5Fcreate|H5F_ACC_RDWR'
found=$(grep -rnE "$pattern" src --include='*.cpp' --include='*.h' --include='*.cu' | grep -vE "$allowed" || true)
if [ -n "$found" ]; then
  echo "check_writers: files written or renamed outside the file layer (base/fs.h):"
  echo "$found" | sed 's/^/    /'
  exit 1
fi
echo "check_writers: every writer under src/ goes through base/fs.h"
