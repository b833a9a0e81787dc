#!/usr/bin/env bash
# The GPU check in one command (issue 12): on a fresh H100/H200 machine with torch and transformers
# preinstalled and no network, from the repo root, with .whl/ carried (bench/gpu_wheels.sh fills it):
#   bash bench/gpu_check.sh                 # writes gpu_check.json + gpu_check.log to $OUT
#   (device tool: run command "bash bench/gpu_check.sh", carry [".whl"], timeout_s 600)
#   bash bench/gpu_check.sh --dry-run --out DIR   # tiny shapes on the CPU (what CI runs)
# Installs only the carried wheels whose package is missing, into /tmp/gpu-check-site; a torchao that
# does not import beside this torch is removed again (the int4 variant then reports why) so it
# cannot break transformers' loading of the other variants. Ends within ~9 minutes (--budget).
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
site=/tmp/gpu-check-site
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
missing=()
for whl in .whl/*.whl; do
  [ -e "$whl" ] || continue
  name=$(basename "$whl" | cut -d- -f1)
  "$py" -c "import $name" >/dev/null 2>&1 || missing+=("$whl")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing carried wheels: ${missing[*]}"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "${missing[@]}" || echo "wheel install failed (continuing with what is there)"
  export PYTHONPATH="$PYTHONPATH:$site"
  if ! "$py" -c "import torchao.quantization" >/dev/null 2>&1 && [ -d "$site/torchao" ]; then
    echo "torchao does not import beside this torch; removed:"
    "$py" -c "import torchao.quantization" 2>&1 | tail -n 3
    rm -rf "$site"/torchao "$site"/torchao-*.dist-info
  fi
fi
exec "$py" bench/gpu_check.py "$@"
