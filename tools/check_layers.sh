#!/usr/bin/env bash
# The torch-free core stays torch-free: lists every header that the compiler read for the
# objects of r1dist_core, r1dist_tokenizer and r1dist_core_tests (Ninja's dependency log,
# so transitive includes count too) and fails naming any that belongs to libtorch (ATen,
# c10, torch, caffe2). Debian installs those headers in /usr/include, where a core file
# would find them without any torch include path; this check is what keeps it out.
# Usage: tools/check_layers.sh BUILD_DIR   (a Ninja build that has been built)
set -euo pipefail
build=${1:?usage: check_layers.sh BUILD_DIR}
ninja -C "$build" -t deps | awk '
  /^[^ \t].*: #deps/ {   # every output: objects, and precompiled headers (.gch), which must reset `core`
    obj = $1; sub(/:$/, "", obj)
    core = (obj ~ /CMakeFiles\/(r1dist_base|r1dist_core|r1dist_tokenizer|r1dist_core_tests)\.dir\//)
    if (core) checked++
    next
  }
  core && /\/(ATen|c10|torch|caffe2)\// {
    bad++
    if (!(obj in seen)) { print "core object " obj " reads torch headers:"; seen[obj] = 1 }
    if (shown[obj]++ < 3) print "    " $1
  }
  END {
    if (checked == 0) { print "check_layers: no core objects in the dependency log (build first?)"; exit 2 }
    if (bad) { print "check_layers: " bad " torch headers read by core objects; keep torch in the torch layer (src/tensor, quant, peft, model, comm, eval, train)"; exit 1 }
    print "check_layers: " checked " core objects, none reads a torch header"
  }'
