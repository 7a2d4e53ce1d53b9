#!/usr/bin/env bash
# Installs the Debian 12 packages seqmix builds with, if any are missing (needs root or sudo).
set -euo pipefail
packages=(g++ cmake ninja-build libeigen3-dev libxsimd-dev xtl-dev catch2 libbenchmark-dev nlohmann-json3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "seqmix: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
