#!/usr/bin/env bash
# Download the wheels bench/gpu_check.sh installs on a GPU machine without network into .whl/
# (ignored by git; carry it with the run: ~47 MB of the 64 MiB limit). Run here, from the repo root:
#   bash bench/gpu_wheels.sh            # bitsandbytes 0.50.2 + torchao 0.18.0 for CPython 3.12 x86_64
set -euo pipefail
cd "$(dirname "$0")/.."
pip=${PIP:-.venv/bin/pip}
[ -x "$pip" ] || pip="python3 -m pip"
mkdir -p .whl
rm -f .whl/*.whl
$pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "bitsandbytes==${BITSANDBYTES_VERSION:-0.50.2}" \
  "torchao==${TORCHAO_VERSION:-0.18.0}"
du -ch .whl/*.whl | tail -n 1
