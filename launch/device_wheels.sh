#!/usr/bin/env bash
# Brings Python packages to the NVIDIA GPU machine, which reaches no package index: MLX's CUDA build
# (with --mlx) and pure-PyPI packages such as Ray. Downloads cp312 manylinux wheels with their
# dependencies, drops the distributions that machine already has (gpu-has.txt beside this script:
# names as `pip list` shows them there), and packs the rest into .device/p1, .device/p2, ... of at
# most PART_MB (default 52) MiB each: one call carries at most 64 MiB, the working tree included.
#   usage: bash ../shared/device/wheelhouse.sh [--mlx 0.32.4] "ray[default]==2.60.0" [more...]
# Run from the project root; it prints the calls to send, in order, on one warm machine.
# Verified 2026-12-06 on an H100: --mlx 0.32.4 "ray[default]==2.60.0" gguf -> 36 wheels, 182 MB, 4 parts.
#
# MiniLLM's copy (launch/device_wheels.sh) differs from ../shared/device/wheelhouse.sh in two
# ways, so MLX CUDA + ray[default] travel in 3 calls instead of 4 (each call is device time):
# DROP (default "virtualenv distlib python-discovery": Ray needs them only for pip/uv runtime
# envs, which MiniLLM never asks for; its actors get env_vars only) names distributions to leave
# out, and parts default to 59 MiB (a call carries 64 MiB with the ~3 MiB working tree).
#   bash launch/device_wheels.sh --mlx 0.32.4 "ray[default]==2.60.0"  ->  33 wheels, 3 parts
set -euo pipefail
mlx=""
if [ "${1:-}" = "--mlx" ]; then mlx=$2; shift 2; fi
[ $# -ge 1 ] || [ -n "$mlx" ] || { echo "usage: $0 [--mlx VERSION] REQUIREMENT..." >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
# the list of what the GPU machine has: beside the shared script, or MINILLM_GPU_HAS
[ -f "$here/gpu-has.txt" ] || here=$(dirname "${MINILLM_GPU_HAS:-$here/../../shared/device/gpu-has.txt}")
root=$(git rev-parse --show-toplevel); cd "$root"
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_35_x86_64
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64"
if [ -n "$mlx" ]; then
  python3 -m pip download -q --no-deps $plat -d "$tmp/all" "mlx==$mlx" "mlx-cuda-13==$mlx" 2>&1 | grep -v '^WARNING' || true
fi
if [ $# -ge 1 ]; then
  python3 -m pip download -q $plat -d "$tmp/all" "$@" 2>&1 | grep -v '^WARNING' || true
fi
norm() { tr 'A-Z_.' 'a-z--'; }
has="$tmp/has"; norm < "$here/gpu-has.txt" > "$has" 2>/dev/null || : > "$has"
mkdir -p "$tmp/keep"
for w in "$tmp"/all/*.whl; do
  name=$(basename "$w" | cut -d- -f1 | norm)
  case "$name" in mlx|mlx-cuda-13) cp "$w" "$tmp/keep/"; continue;; esac
  grep -qx "$name" "$has" && continue
  case " ${DROP-virtualenv distlib python-discovery} " in *" $name "*) continue;; esac
  cp "$w" "$tmp/keep/"
done
rm -rf .device/p[0-9]*
(cd "$tmp/keep" && tar -cf "$tmp/wh.tar" .)
split -b "${PART_MB:-59}m" -d -a 1 "$tmp/wh.tar" "$tmp/part."
n=0; for p in "$tmp"/part.*; do n=$((n+1)); mkdir -p ".device/p$n"; mv "$p" ".device/p$n/"; done
echo "$(ls "$tmp/keep" | wc -l) wheels not on the GPU machine, $(du -sh "$tmp/wh.tar" | cut -f1) in $n part(s) under .device/:"
ls "$tmp/keep" | sed 's/^/  /'
cat <<MSG

Send on one warm machine, back to back (it goes back 30 s after a call; if it did, start again):
MSG
for i in $(seq 1 "$n"); do
  if [ "$i" -lt "$n" ]; then
    echo "  call $i, carry [\".device/p$i\"]:  mkdir -p /root/wh && cp .device/p$i/part.* /root/wh/ && echo part-$i-ok"
  else
    echo "  call $i, carry [\".device/p$i\"]:  mkdir -p /root/wh && cp .device/p$i/part.* /root/wh/ && (cd /root/wh && cat part.* | tar -x && rm part.*) && python3 -m pip install -q --no-index --no-deps --no-compile --target /root/site /root/wh/*.whl && export PYTHONPATH=/root/site:\$PWD && YOUR_COMMAND"
  fi
done
echo "  later calls on the same machine: export PYTHONPATH=/root/site:\$PWD && YOUR_COMMAND"
echo "  (a Ray started there needs the GPU named: ray.init(num_gpus=1), or the actors see none)"
