#!/usr/bin/env bash
# Run HERE (a machine with PyPI) before bench/gpu_check.sh: downloads into .whl/ the wheels the device
# machine lacks (its image has torch, transformers, peft, accelerate, pandas, matplotlib; no network), for
# its Python 3.12 on x86-64. `.whl/` is git-ignored through .git/info/exclude; carry it to the device.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
WHEELS=(
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5  # config
  tomli_w==1.2.0 chess==1.10.0 zstandard==0.25.0                                         # run folders, chess
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19                           # the TRL baseline
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
du -sh .whl
