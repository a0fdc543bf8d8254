"""Enlarge an Amazon review dataset or a MovieLens folder F times while keeping its statistics, for scale
benchmarks.

    python bench/synth.py --factor 10 --out bench/data/x10            # the default dataset, 10x
    python bench/synth.py --factor 100 --out bench/data/x100 --data path/to/reviews.json.gz
    python bench/synth.py --factor 16 --out bench/data/ml16 --data path/to/ml-latest-small   # 1.6M ratings

Every user u becomes F users u~0..u~F-1 and every item i F items i~0..i~F-1. Copy k of user u rates item
copy (k + h(u)) mod F of each item u rated, with u's rating and review text (h: a seeded per-user offset).
So, exactly: F times the users, items and interactions; every user copy has its original's number of
ratings and every item copy its original's; the rating distribution and review lengths are unchanged; the
copies interleave (an item copy is rated by copies from different blocks), so the enlarged graph is one
dataset rather than F disjoint ones. Times move by a seeded jitter of up to one day. Item metadata
(``meta_*.json[.gz]`` beside the reviews) is copied per item copy. A MovieLens folder (``ratings.csv``,
``movies.csv``) is enlarged the same way: user u's copy k is ``u * F + k``, item i's copy c is ``i * F + c``, and
``movies.csv`` has every copy with its original's title and genres (tags are not copied).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "data" / "amazon-musical-instruments-5core" / "reviews_Musical_Instruments_5.json.gz"


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")


def enlarge(reviews: Path, out: Path, factor: int, seed: int = 0) -> dict:
    """Write ``out/reviews.json.gz`` (and ``out/meta_items.json.gz`` when metadata exists); return counts."""
    if factor < 1:
        raise ValueError("factor must be >= 1")
    records = [json.loads(line) for line in _open(reviews) if line.strip()]
    rng = np.random.default_rng(seed)
    users = sorted({r["reviewerID"] for r in records})
    offset = dict(zip(users, rng.integers(0, factor, len(users)).tolist(), strict=True))
    jitter = rng.integers(-86_400, 86_400, (factor, len(records)))
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with gzip.open(out / "reviews.json.gz", "wt", encoding="utf-8", compresslevel=1) as sink:
        for k in tqdm(range(factor), desc=f"x{factor}", disable=None):
            for n, record in enumerate(records):
                copy = dict(record)
                copy["reviewerID"] = f"{record['reviewerID']}~{k}"
                copy["asin"] = f"{record['asin']}~{(k + offset[record['reviewerID']]) % factor}"
                if "unixReviewTime" in copy:
                    copy["unixReviewTime"] = int(copy["unixReviewTime"]) + int(jitter[k, n])
                    copy.pop("reviewTime", None)
                sink.write(json.dumps(copy) + "\n")
                written += 1
    metas = sorted(reviews.parent.glob("meta_*.json*"))
    if metas:
        with gzip.open(out / "meta_items.json.gz", "wt", encoding="utf-8", compresslevel=1) as sink:
            for line in _open(metas[0]):
                if line.strip():
                    item = json.loads(line)
                    for j in range(factor):
                        sink.write(json.dumps({**item, "asin": f"{item['asin']}~{j}"}) + "\n")
    return {"interactions": written, "users": len(users) * factor, "items": len({r["asin"] for r in records}) * factor}


def enlarge_movielens(folder: Path, out: Path, factor: int, seed: int = 0) -> dict:
    """Write ``out/ratings.csv`` and ``out/movies.csv``: ``folder``'s MovieLens tables enlarged ``factor``
    times (the scheme above); return counts."""
    import pandas as pd

    if factor < 1:
        raise ValueError("factor must be >= 1")
    ratings = pd.read_csv(folder / "ratings.csv")
    movies = pd.read_csv(folder / "movies.csv")
    rng = np.random.default_rng(seed)
    users = np.sort(ratings["userId"].unique())
    offset = pd.Series(rng.integers(0, factor, len(users)), index=users)
    jitter = rng.integers(-86_400, 86_400, (factor, len(ratings)))
    shift = offset.reindex(ratings["userId"]).to_numpy()
    copies = [
        pd.DataFrame(
            {
                "userId": ratings["userId"].to_numpy() * factor + k,
                "movieId": ratings["movieId"].to_numpy() * factor + (k + shift) % factor,
                "rating": ratings["rating"].to_numpy(),
                "timestamp": ratings["timestamp"].to_numpy() + jitter[k],
            }
        )
        for k in range(factor)
    ]
    out.mkdir(parents=True, exist_ok=True)
    enlarged = pd.concat(copies, ignore_index=True)
    catalogue = pd.concat(
        [movies.assign(movieId=movies["movieId"] * factor + c) for c in range(factor)], ignore_index=True
    )
    # each file written aside and renamed: a stopped run leaves none half written (ratings.csv last: its
    # presence says the folder is complete)
    for name, frame in (("movies.csv", catalogue.sort_values("movieId")), ("ratings.csv", enlarged)):
        frame.to_csv(out / f".{name}.partial", index=False)
        (out / f".{name}.partial").rename(out / name)
    return {"interactions": len(enlarged), "users": len(users) * factor, "items": len(catalogue)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT,
        help="Amazon review JSON lines, or a MovieLens folder with ratings.csv and movies.csv (default: the "
        "shipped dataset)",
    )
    parser.add_argument("--factor", type=int, default=10, help="enlargement factor (default 10)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    enlarger = enlarge_movielens if (args.data / "ratings.csv").exists() else enlarge
    print(json.dumps(enlarger(args.data, args.out, args.factor, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
