#!/usr/bin/env bash
# Installs what building and testing mtinfer needs on Debian 12 (run as root; a no-op when
# everything is present). The CUDA toolkit is optional: with nvcc on PATH or in
# /usr/local/cuda the CUDA backend is built too.
set -euo pipefail
packages=(make clang libclang-rt-14-dev clang-format libopenblas-dev libcjson-dev libcmocka-dev
          spin gcc python3 python3-numpy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${missing[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: ok"
