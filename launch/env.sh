# Sourced by the launchers: lets mpirun run as root in containers and CI, keeps NVLink
# multicast off (shared GPU hosts), and on the GPU machine points CMake at torch + toml++.
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
_r1dist_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if python3 -c 'import torch' 2>/dev/null; then
  _torch_cmake=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  export CMAKE_PREFIX_PATH="${_torch_cmake}:${_r1dist_root}/.deps/toml/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  # PCRE2/ICU -dev files staged from Debian where the machine has none (tools/gpu/stage-deps.sh).
  if [ ! -f /usr/include/pcre2.h ] && [ -d "${_r1dist_root}/.deps/sys/usr" ]; then
    export CMAKE_PREFIX_PATH="${CMAKE_PREFIX_PATH}:${_r1dist_root}/.deps/sys/usr"
    # RUNPATH does not reach libicuuc's own dependency (libicudata).
    export LD_LIBRARY_PATH="${_r1dist_root}/.deps/sys/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi
