#!/usr/bin/env bash
# The GPU run, in one command: builds native/ (libhigher_kernels.so) with cmake and the machine's
# nvcc, points the CUDA backend at it, runs the NativeAOT device check (no .NET needed there) and
# prints its markdown table. Exit code: the device check's (0 passed, 1 a check failed, 3 no CUDA).
#
# Prepare on a machine with the .NET SDK (no GPU needed):
#   dotnet publish -c Release -r linux-x64 tools/DeviceCheck -o artifacts/device-check
# Then on the GPU machine, from the repository root (artifacts/ travels with the working tree, or is carried):
#   bash tools/device-check.sh [DeviceCheck options, e.g. --quick]
# The report is also written to $OUT/device-check.md when OUT is set, else to artifacts/device-check.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${DEVICE_CHECK_BIN:-$root/artifacts/device-check/DeviceCheck}"
if [[ ! -x "$bin" ]]; then
  echo "device-check: $bin not found; publish it first: dotnet publish -c Release -r linux-x64 tools/DeviceCheck -o artifacts/device-check" >&2
  exit 2
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# The CUDA compiler: on PATH, or the toolkit's usual place.
nvcc_bin="$(command -v nvcc || true)"
if [[ -z "$nvcc_bin" && -x /usr/local/cuda/bin/nvcc ]]; then
  nvcc_bin=/usr/local/cuda/bin/nvcc
fi
if [[ -z "$nvcc_bin" ]]; then
  echo "device-check: nvcc not found; cannot build native/" >&2
  exit 2
fi
export PATH="$(dirname "$nvcc_bin"):$PATH"
"$nvcc_bin" --version | tail -n 2

start=$(date +%s)
HIGHER_BUILD_JOBS="$(nproc)" bash "$root/native/build.sh"
echo "native/ built in $(( $(date +%s) - start )) s"
export HIGHER_KERNELS_PATH="$root/native/build/libhigher_kernels.so"

# libcudart and libcublas of the toolkit's major version must be loadable by soname: add the
# folders that hold them (the toolkit's lib64, or pip's nvidia-* wheels) unless ldconfig knows them.
cuda_major="$("$nvcc_bin" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
add_library_dir_of() {
  local soname="$1" dir
  if ldconfig -p 2>/dev/null | grep -q "$soname"; then
    return
  fi
  for dir in "$(dirname "$nvcc_bin")/../lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    if [[ -e "$dir/$soname" ]]; then
      export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      return
    fi
  done
  dir="$(find /usr /opt -name "$soname" -print -quit 2>/dev/null || true)"
  if [[ -n "$dir" ]]; then
    export LD_LIBRARY_PATH="$(dirname "$dir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}
if [[ "$cuda_major" == 11 ]]; then
  add_library_dir_of libcudart.so.11.0
else
  add_library_dir_of "libcudart.so.$cuda_major"
fi
add_library_dir_of "libcublas.so.$cuda_major"

report="${OUT:-$root/artifacts}/device-check.md"
mkdir -p "$(dirname "$report")"
set +e
"$bin" "$@" --out "$report"
status=$?
set -e
echo "device-check: exit code $status; report in $report"
exit "$status"
