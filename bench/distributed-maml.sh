#!/usr/bin/env bash
# Data-parallel MAML (issue 14): the maml-sine sample's meta-training time with 2 MPI ranks x 1 thread
# against 1 rank x 2 threads (the Reference backend's kernel threads) and 1 x 1, same tasks and settings (float32,
# meta-batch 25, K = 10). Thread counts are set with DOTNET_PROCESSOR_COUNT, which the Reference
# backend's default reads. Each configuration runs REPEATS times, alternating; the table takes the
# meta-training seconds the sample logs at its last meta-iteration. Needs Open MPI (setup.sh installs it as root).
# Defaults (ITERATIONS=500, REPEATS=2) take under a minute on a quiet 2-core machine (minutes under load).
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${ITERATIONS:-500}
repeats=${REPEATS:-2}
dotnet build samples/Higher.Samples -c Release --nologo -v quiet >/dev/null
app=samples/Higher.Samples/bin/Release/net10.0/higher-samples.dll
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mpi=(mpirun -np 2 --oversubscribe --allow-run-as-root --mca btl_vader_single_copy_mechanism none)
seconds() { grep -E "meta-iteration +$iterations:" | sed -E 's/.*\(([0-9.]+) s\)$/\1/'; }
echo "load: $(uptime)"
echo "| run | 1 rank x 1 thread (s) | 1 rank x 2 threads (s) | 2 ranks x 1 thread (s) | 2 ranks x 1 thread, yield when idle (s) |"
echo "|---|---:|---:|---:|---:|"
for r in $(seq 1 "$repeats"); do
  single=$(DOTNET_PROCESSOR_COUNT=1 dotnet "$app" maml-sine --iterations "$iterations" --eval-tasks 10 --out "$out/single" | seconds)
  one=$(DOTNET_PROCESSOR_COUNT=2 dotnet "$app" maml-sine --iterations "$iterations" --eval-tasks 10 --out "$out/one" | seconds)
  two=$("${mpi[@]}" -x DOTNET_PROCESSOR_COUNT=1 dotnet "$app" maml-sine --distributed --iterations "$iterations" --eval-tasks 10 --out "$out/two" | seconds)
  yield=$("${mpi[@]}" --mca mpi_yield_when_idle 1 -x DOTNET_PROCESSOR_COUNT=1 dotnet "$app" maml-sine --distributed --iterations "$iterations" --eval-tasks 10 --out "$out/yield" | seconds)
  echo "| $r | $single | $one | $two | $yield |"
done
echo "load after: $(uptime)"
