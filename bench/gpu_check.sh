#!/usr/bin/env bash
# The GPU check, on the lent device machine (no network there), in under 8 minutes on one GPU:
#   here:    bash bench/gpu_wheels.sh
#   device:  run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Installs the carried wheels beside the image's torch/transformers/peft, then runs bench/gpu_check.py
# (LoRA on a random Qwen3-8B-shaped model: tokens/s against TRL's SFTTrainer, peak memory against
# backends/memory.py's estimate, then a short organism run). The log lands in $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
log="${OUT:-/tmp}/gpu_check.log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$log"
cd bench && timeout 470 python3 gpu_check.py "$@" 2>&1 | tee -a "$log"
