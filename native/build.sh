#!/usr/bin/env bash
# Builds native/build/libhigher_kernels.so when a CUDA compiler is present; a no-op otherwise,
# so that machines without CUDA still build and test the managed code.
set -euo pipefail
src="${BASH_SOURCE[0]}"
[[ "$src" == */* ]] || src="./$src"
here="$(cd "${src%/*}" && pwd)"

nvcc_bin="$(command -v nvcc || true)"
if [[ -z "$nvcc_bin" && -x /usr/local/cuda/bin/nvcc ]]; then
  nvcc_bin=/usr/local/cuda/bin/nvcc
fi
if [[ -z "$nvcc_bin" ]]; then
  echo "nvcc not found: skipping native build"
  exit 0
fi

if ! command -v cmake >/dev/null; then
  echo "cmake not found: cannot build native/ although nvcc is at $nvcc_bin" >&2
  exit 1
fi

args=(-S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" -DCMAKE_CUDA_COMPILER="$nvcc_bin")
if [[ -n "${HIGHER_CUDA_HOST_COMPILER:-}" ]]; then
  args+=(-DCMAKE_CUDA_HOST_COMPILER="$HIGHER_CUDA_HOST_COMPILER")
else
  # nvcc 11.x rejects gcc newer than 11; fall back to clang 14 where it is installed.
  major="$("$nvcc_bin" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
  gcc_major="$( (gcc -dumpversion 2>/dev/null || echo 0) | cut -d. -f1)"
  if [[ "${major:-0}" -le 11 && "$gcc_major" -gt 11 ]] && command -v clang++-14 >/dev/null; then
    args+=(-DCMAKE_CUDA_HOST_COMPILER=clang++-14)
  fi
fi

cmake "${args[@]}"
cmake --build "$here/build" --parallel "${HIGHER_BUILD_JOBS:-2}"
