"""The data card on real datasets, with the text-duplicate policy kept and collapsed side by side: how much of
each dataset is variant duplicates (one user's identical text on several items), how many held-out pairs of
each split have a same-user text twin in training, which warnings fire, and what computing the card costs.

    python bench/data_cards.py                                   # the default dataset + every folder of ../shared/data
    python bench/data_cards.py --data ../shared/data/amazon2018-gift-cards [--out bench/results/data_cards.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import ROOT, prepared, write_json

SHARED = ROOT.parent / "shared" / "data"


def card_of(path: Path, policy: str) -> dict:
    from data_checks import DataCardConfig
    from readers import resolve_dataset
    from tasks import IngestConfig
    from tasks.datacard import card_for_workspace

    con = prepared(path, ingest=IngestConfig(text_duplicates=policy))
    accounting = con.execute(
        "SELECT raw, kept, text_duplicates FROM ingest_counts WHERE role = 'interactions'"
    ).fetchone()
    start = time.perf_counter()
    card = card_for_workspace(con, resolve_dataset(path), DataCardConfig())
    seconds = time.perf_counter() - start
    twins = {s: round(c["held_out_with_same_user_twin"], 4) for s, c in card["splits"].items()}
    return {
        "dataset": resolve_dataset(path).name,
        "policy": policy,
        "raw": accounting[0],
        "kept": accounting[1],
        "collapsed": accounting[2],
        "variant_share": round(card["variant_duplicates"]["share"], 4),
        "variant_groups": card["variant_duplicates"]["groups"],
        "same_user_twins": twins,
        "warnings": sorted({w["code"] for w in card["warnings"]}),
        "card_seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", nargs="+", type=Path, help="dataset paths (default: the default dataset and ../shared/data/*)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "data_cards.json")
    args = parser.parse_args()
    from readers import DEFAULT_DATASET

    paths = args.data or [DEFAULT_DATASET, *sorted(p for p in SHARED.iterdir() if p.is_dir())]
    rows, seen = [], set()
    for path in paths:
        if path.name in seen:  # the default dataset is also in ../shared/data
            continue
        seen.add(path.name)
        for policy in ("keep", "collapse"):
            print(f"[data_cards] {path.name} with --text-duplicates {policy} ...", flush=True)
            rows.append(card_of(path, policy))
    print(
        f"\n{'dataset':<34}{'policy':>9}{'raw':>9}{'kept':>9}{'variants':>10}{'groups':>8}  twins in held-out (same user)  warnings  card s"
    )
    for r in rows:
        twins = " ".join(f"{s.split('_s')[0]} {v:.1%}" for s, v in sorted(r["same_user_twins"].items()))
        print(
            f"{r['dataset']:<34}{r['policy']:>9}{r['raw']:>9,}{r['kept']:>9,}{r['variant_share']:>10.1%}"
            f"{r['variant_groups']:>8,}  {twins:<29}  {','.join(r['warnings']) or '-'}  {r['card_seconds']}"
        )
    write_json(args.out, rows)


if __name__ == "__main__":
    main()
