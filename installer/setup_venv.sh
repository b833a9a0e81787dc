#!/usr/bin/env bash
# Create the virtual environment and install the workstation with its test extras.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
"$python" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# A CPU torch is enough where there is no NVIDIA driver; on a GPU workstation pip picks CUDA.
if ! command -v nvidia-smi >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install -q "torch==2.13.0"
fi
"$venv/bin/python" -m pip install -q -e '.[test]'
# The lowest allowed transformers beside the venv, for the version-floor test (~130 MB,
# --no-deps: the venv's own torch, numpy, safetensors ... serve everything else).
floor="$venv/transformers-floor"
if ! cmp -s installer/transformers-floor.txt "$floor/PINS" 2>/dev/null; then
  rm -rf "$floor"
  "$venv/bin/python" -m pip install -q --no-deps --target "$floor" -r installer/transformers-floor.txt
  cp installer/transformers-floor.txt "$floor/PINS"
fi
