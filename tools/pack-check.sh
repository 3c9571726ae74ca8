#!/usr/bin/env bash
# Packs the library packages into a local folder, checks that exactly Higher, Higher.Abstractions,
# Higher.Reference, Higher.Cuda and Higher.Distributed came out (with symbols, README, licence and SourceLink), creates a
# fresh console app outside the repository, installs Higher from that folder alone (no other feed,
# an empty package cache) and runs a meta-gradient checked against finite differences.
# Offline; about a minute. PACK_NO_BUILD=1 packs what `dotnet test -c Release` already built.
# (No `grep -q` after a pipe: it can exit before unzip has written everything, and pipefail then reports the SIGPIPE.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
feed="$work/feed"
version=0.1.0

dotnet pack "$root/Higher.sln" -c Release -o "$feed" -p:ContinuousIntegrationBuild=true ${PACK_NO_BUILD:+--no-build} --nologo -v quiet

got=$(cd "$feed" && ls | sort | tr '\n' ' ')
want=""
for p in Higher Higher.Abstractions Higher.Cuda Higher.Distributed Higher.Reference; do want+="$p.$version.nupkg $p.$version.snupkg "; done
want=$(echo "$want" | tr ' ' '\n' | grep . | sort | tr '\n' ' ')
if [ "$got" != "$want" ]; then
  echo "pack-check: expected packages [$want], got [$got]" >&2
  exit 1
fi
for p in Higher Higher.Abstractions Higher.Cuda Higher.Distributed Higher.Reference; do
  nuspec=$(unzip -p "$feed/$p.$version.nupkg" "$p.nuspec")
  for field in '<license type="expression">' '<readme>README.md</readme>' '<projectUrl>' '<repository type="git" url="https://'; do
    grep -qF "$field" <<<"$nuspec" || { echo "pack-check: $p.nuspec lacks $field" >&2; exit 1; }
  done
  unzip -l "$feed/$p.$version.nupkg" | grep -F "lib/net10.0/$p.xml" >/dev/null || { echo "pack-check: $p has no XML docs" >&2; exit 1; }
  unzip -l "$feed/$p.$version.snupkg" | grep -F "lib/net10.0/$p.pdb" >/dev/null || { echo "pack-check: $p has no symbols" >&2; exit 1; }
done

# The kernels travel in Higher.Cuda as its linux-x64 native asset when native/build.sh built them (nvcc present).
kernels="$root/native/build/libhigher_kernels.so"
asset="runtimes/linux-x64/native/libhigher_kernels.so"
if [ -f "$kernels" ]; then
  unzip -l "$feed/Higher.Cuda.$version.nupkg" | grep -q "$asset" || { echo "pack-check: $kernels exists but Higher.Cuda lacks $asset" >&2; exit 1; }
  echo "pack-check: Higher.Cuda carries $asset"
else
  if unzip -l "$feed/Higher.Cuda.$version.nupkg" | grep -q "$asset"; then echo "pack-check: Higher.Cuda carries $asset but native/build has none" >&2; exit 1; fi
  echo "pack-check: no native/build/libhigher_kernels.so (nvcc absent or native/build.sh not run): Higher.Cuda carries no kernels"
fi

export NUGET_PACKAGES="$work/packages" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
cd "$work"
dotnet new console -o app --force >/dev/null
cd app
cat > nuget.config <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
  </packageSources>
</configuration>
XML
dotnet add package Higher --version "$version" >/dev/null
if [ -f "$kernels" ]; then dotnet add package Higher.Cuda --version "$version" >/dev/null; fi
cp "$root/tools/pack-check/Program.cs" Program.cs
dotnet run -c Release
if [ -f "$kernels" ]; then
  [ -f "bin/Release/net10.0/$asset" ] || { echo "pack-check: the app that installed Higher.Cuda has no bin/Release/net10.0/$asset" >&2; exit 1; }
  echo "pack-check: the installed app has $asset (where the CUDA backend probes for it)"
fi
echo "pack-check: OK (Higher $version installed from $feed into a fresh console app)"
