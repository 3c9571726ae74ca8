#!/usr/bin/env bash
# Set-up for a fresh machine: checks the .NET SDK, restores packages, and builds the CUDA
# kernels only when nvcc is present (the library and the tests need neither CUDA nor Python).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v dotnet >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y dotnet-sdk-10.0
  else
    echo "The .NET 10 SDK is required (dotnet not found on PATH): https://dot.net/download" >&2
    exit 1
  fi
fi
# The samples' plots need a font; the package check unpacks .nupkg files; tests/Distributed starts
# mpirun (Open MPI; without it those tests report skipped).
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=""
  command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list 2>/dev/null | head -1)" ] || missing+=" fonts-dejavu-core fontconfig"
  command -v unzip >/dev/null 2>&1 || missing+=" unzip"
  command -v mpirun >/dev/null 2>&1 && [ -n "$(ldconfig -p 2>/dev/null | grep 'libmpi\.so\.40')" ] || missing+=" openmpi-bin libopenmpi-dev"
  if [ -n "$missing" ]; then
    apt-get install -y $missing || echo "Could not install$missing (the plots, the package check or the MPI tests may fail or skip)." >&2
  fi
fi
dotnet --version
dotnet restore Higher.sln
if [ -x native/build.sh ]; then
  bash native/build.sh
fi
