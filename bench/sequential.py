"""Sequential models side by side on one prepared split: seconds per epoch, validation and test NDCG@K.

    python bench/sequential.py --workspace W --split temporal_s0 \\
        --variant defaults '{}' --variant len50 '{"max_len": 50}' --variant cornac-negatives '{"sample_alpha": 0.5}'
    python bench/sequential.py --workspace W --model bert4rec --variant defaults '{}'

    python bench/sequential.py --workspace W --model lm_sequential --variant text '{}'   # the sequential LM

Models: SASRec and BERT4Rec (models/recommenders/sequential.py), the sequential LM and its id-only twin
(models/lm/sequential.py; they read the workspace's text cache, W/text_states). Each variant is the model built
with its defaults plus the variant's settings, fitted on the training fold (no search), its score-time popularity
weight chosen on validation NDCG@K (``--no-weight``: left at 0), then made to know training + validation (a
refit, or for the sequential LMs the validation interactions joining the sequences) and scored on test: the
path ``flows.full`` takes for one configuration (on a cold-item split, as the flow does: judged and scored over
the items without training interactions, the sequential LMs with their item metadata dropout). Read-only on
the workspace; the JSON (bench/results/sequential.json unless --json) holds the same rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_json  # noqa: E402


def sequence_models() -> list[str]:
    """The registered models that read each user's items in order (their classes have ``sequence``)."""
    from models.registry import REGISTRY

    return [name for name, spec in REGISTRY.items() if hasattr(spec.cls, "sequence")]


def build(name: str, settings: dict, *, k: int, workspace: Path, cold: bool = False):
    """The model with its class's defaults and ``settings``; the sequential LMs read the workspace's text cache
    and, on a cold-item split (``cold``), are judged on cold items with the flow's item metadata dropout."""
    from models.registry import COLD_ITEM_METADATA_DROPOUT, REGISTRY

    cls = REGISTRY[name].cls
    extra = {"text_cache": workspace / "text_states"} if REGISTRY[name].family == "language" else {}
    if cold and REGISTRY[name].family == "language":
        overrides = {"item_metadata_dropout": COLD_ITEM_METADATA_DROPOUT, **settings.pop("overrides", {})}
        extra |= {"cold_validation": True, "overrides": overrides}
    model = cls(k=k, **extra, **settings)
    model.name = name
    return model


def run_variant(data: dict, model, *, k: int, weight: bool, cold: bool = False) -> dict:
    from models.evaluation import EvalConfig
    from models.evaluation.harness import known_before_test, per_user_values
    from models.tuning import SearchSpace, tune

    name = model.name
    own = model.search_space()  # its score-time weights and its judge (NDCG for the sequential LM, a rating model)
    space = SearchSpace(after_fit=own.after_fit if weight else {}, judge=own.judge)
    started = time.perf_counter()
    fitted = model.fit(data["train"], data["validation"], items=data["items"])
    fit_seconds = time.perf_counter() - started
    tuned = tune(model, data["train"], data["validation"], items=data["items"], space=space, fitted=fitted)
    history = known_before_test(data["train"], data["validation"])
    started = time.perf_counter()
    scored = tuned.model.refitted(tuned.config, history, items=data["items"])
    refit_seconds = time.perf_counter() - started
    values, _ = per_user_values(scored, name, history, data["test"], EvalConfig(k=k, n_boot=100), cold_candidates=cold)
    ndcg = values[values.metric == "ndcg"]
    return {
        "model": name,
        "epochs": scored.epochs,
        "seconds_per_epoch": round(fit_seconds / scored.epochs, 3),
        "popularity_weight": float(tuned.config.get("popularity_weight_", 0.0)),
        "validation_ndcg": None if tuned.score != tuned.score else round(float(tuned.score), 4),
        "test_ndcg": round(float(ndcg.num.sum() / ndcg.den.sum()), 4),
        "fit_seconds": round(fit_seconds, 1),
        "refit_seconds": round(refit_seconds, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="a prepared workspace (flows.prepare)")
    parser.add_argument("--split", default="temporal_s0", help="split id (default: temporal_s0)")
    parser.add_argument("--model", choices=sequence_models(), default="sasrec", help="default: sasrec")
    parser.add_argument(
        "--variant",
        nargs=2,
        action="append",
        metavar=("LABEL", "JSON"),
        required=True,
        help="a label and the constructor settings over the defaults, as JSON (repeatable)",
    )
    parser.add_argument("--k", type=int, default=10, help="NDCG cut-off (default: 10)")
    parser.add_argument("--no-weight", action="store_true", help="no score-time popularity weight (Cornac's scores)")
    parser.add_argument("--json", type=Path, help="where the rows go (default: bench/results/sequential.json)")
    args = parser.parse_args(argv)

    from readers.errors import InputError
    from tasks.split import load_split, split_protocol
    from tasks.store import connect

    db = args.workspace / "reclab.duckdb"
    if not db.exists():
        raise SystemExit(f"error: {db} does not exist (pass a prepared workspace folder)")
    variants = []
    for label, text in args.variant:
        try:
            variants.append((label, json.loads(text)))
        except json.JSONDecodeError as err:
            raise SystemExit(f"error: --variant {label}: {text!r} is not JSON ({err})") from None
    try:
        with connect(db, read_only=True) as con:
            data = load_split(con, args.split)
            cold = split_protocol(con, args.split) == "cold_items"
    except InputError as err:
        raise SystemExit(f"error: {err}") from None

    rows = []
    header = (
        f"{'variant':<20} {'s/epoch':>8} {'weight':>6} {'val NDCG':>9} {'test NDCG':>9} {'fit s':>7} {'refit s':>7}"
    )
    print(f"{args.model} on {args.split} of {args.workspace} (NDCG@{args.k}; test: refitted on training + validation)")
    for label, settings in variants:
        model = build(args.model, dict(settings), k=args.k, workspace=args.workspace, cold=cold)
        row = {
            "variant": label,
            "settings": settings,
            **run_variant(data, model, k=args.k, weight=not args.no_weight, cold=cold),
        }
        rows.append(row)
        if len(rows) == 1:
            print(header)
        print(
            f"{label:<20} {row['seconds_per_epoch']:>8.2f} {row['popularity_weight']:>6g} "
            f"{row['validation_ndcg'] if row['validation_ndcg'] is not None else '—':>9} {row['test_ndcg']:>9.4f} "
            f"{row['fit_seconds']:>7.1f} {row['refit_seconds']:>7.1f}",
            flush=True,
        )
    write_json(args.json or ROOT / "bench" / "results" / "sequential.json", {"split": args.split, "rows": rows})


if __name__ == "__main__":
    main()
