#!/usr/bin/env bash
# The GPU benchmark on a bare GPU machine (written by bench/gpu_pack.py; see gpu_run.py --help):
#   bash run.sh [--profile gpu|gpu-lora|cpu|cpu-lora] [--splits random_s0 ...] [--set '{"batch_size": 256}']
# Installs only what is missing, from wheels/, into .site/ (nothing is downloaded, the system is untouched).
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
missing=$(python - <<'PY'
import importlib.util
modules = {"pydantic": "pydantic", "pydantic_core": "pydantic-core", "annotated_types": "annotated-types",
           "typing_inspection": "typing-inspection", "peft": "peft", "accelerate": "accelerate", "psutil": "psutil"}
missing = [dist for module, dist in modules.items() if importlib.util.find_spec(module) is None]
if "pydantic" in missing:
    missing.append("typing-extensions")  # pydantic needs a recent one; the wheel's shadows an older system copy
print(" ".join(missing))
PY
)
if [ -n "$missing" ]; then
  echo "[gpu-run] installing from wheels/: $missing"
  python -m pip install --quiet --no-index --no-deps --find-links wheels --target .site $missing
fi
export PYTHONPATH="$PWD/.site:$PWD/code${PYTHONPATH:+:$PYTHONPATH}"
python gpu_run.py "$@"
