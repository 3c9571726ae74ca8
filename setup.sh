#!/usr/bin/env bash
# Set-up for a fresh machine: checks the .NET SDK, restores packages, and builds the CUDA
# kernels only when nvcc is present (the library and the tests need neither CUDA nor Python).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v dotnet >/dev/null 2>&1; then
  echo "The .NET 10 SDK is required (dotnet not found on PATH)." >&2
  exit 1
fi
dotnet --version
dotnet restore Higher.sln
if [ -x native/build.sh ]; then
  bash native/build.sh
fi
