#!/usr/bin/env bash
# The bench's CPU peer: PyTorch from Debian (python3-torch, which uses the same OpenBLAS as
# mtinfer). Optional: when it cannot be installed (not root, no network) the bench runs
# without the peer columns and says so.
if python3 -c 'import torch' >/dev/null 2>&1 || /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  echo "install-peer: torch present"; exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch >/dev/null 2>&1 \
    && { echo "install-peer: installed python3-torch"; exit 0; }
fi
echo "install-peer: PyTorch not installed; the bench will run without its peer"
exit 0
