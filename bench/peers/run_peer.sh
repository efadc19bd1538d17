#!/bin/sh
# Runs torch_peer.py with the first python that has torch: python3 on PATH, then Debian's
# /usr/bin/python3 (where `apt-get install python3-torch` puts it). Without torch the peer
# prints {"available": false, ...} and the bench says so.
dir=$(dirname "$0")
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import torch' >/dev/null 2>&1; then
    exec "$py" "$dir/torch_peer.py" "$@"
  fi
done
exec python3 "$dir/torch_peer.py" "$@"
