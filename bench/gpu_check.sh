#!/usr/bin/env bash
# On a machine with a GPU: fine-tune one epoch of the default dataset with the GPU profile (bf16, every GPU,
# DDP when there are several) through the real launcher, then print samples/s and peak GPU memory.
# Usage: bash bench/gpu_check.sh ['{"batch_size": 128}']   (extra LMConfig fields as JSON)
# Needs the project installed as the README says, with a CUDA build of torch; nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
out="${OUT:-bench/results}/gpu_check"
rm -rf "$out" && mkdir -p "$out/data"
python - "$out" "${1:-{\}}" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, ".")
from bench.common import prepared
from models.lm.config import PROFILES, LMConfig
from readers import DEFAULT_DATASET
from tasks.split import load_split

out, extra = Path(sys.argv[1]), json.loads(sys.argv[2])
con = prepared(DEFAULT_DATASET, protocols=("random",))
data = load_split(con, "random_s0")
for name in ("train", "validation", "test", "items"):
    frame = data[name] if name in ("train", "items") else data[name][["user_id", "item_id", "rating"]]
    frame.to_parquet(out / "data" / f"{name}.parquet", index=False)
config = LMConfig(**{**PROFILES["gpu"], "max_epochs": 1, "progress_bar": False, **extra},
                  data_dir=str(out / "data"), output_dir=str(out / "run"))
(out / "config.json").write_text(config.model_dump_json(indent=2))
PY
python -m models.lm.train --config "$out/config.json" > "$out/train.log" 2>&1 || { tail -50 "$out/train.log"; exit 1; }
python - "$out" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
out = Path(sys.argv[1])
m = json.loads((out / "run" / "metrics.json").read_text())
pairs = len(pd.read_parquet(out / "data" / "train.parquet"))
print(json.dumps({"world_size": m["world_size"], "precision": m["precision"], "train_pairs": pairs,
                  "train_seconds": round(m["train_seconds"], 1), "samples_per_s": round(pairs / m["train_seconds"], 1),
                  "peak_gpu_mem_gib": m.get("peak_gpu_mem_gib"), "best_val_rmse": m["best_val_rmse"]}, indent=2))
PY
