"""What pseudonymous user ids cost in serving: the same champion bundle served with raw ids and with keyed
pseudonyms, in-process top-10 for the same random known users, the two alternating request by request (a busy
machine slows both alike); latency percentiles side by side and their ratio.

    python bench/pseudonyms.py --workspace W [--n 3000]

W: a workspace with a published champion (``python -m flows.full``). Its bundle is written again, once with
raw ids and once with pseudonyms under a throwaway key (the workspace's own key is not touched); the users are
the workspace's raw ids. Prints a table and writes bench/results/pseudonyms.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import percentiles  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="a workspace with a published champion")
    parser.add_argument("--n", type=int, default=3000, help="requests per variant (default 3000)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pseudonyms.json")
    args = parser.parse_args(argv)

    import duckdb
    import numpy as np

    from models.serving.bundle import load_model, save_model
    from models.serving.model import ServingModel
    from models.serving.published import read_champion, registry_dir
    from tasks import tables

    pointer = read_champion(registry_dir(args.workspace))
    if pointer is None:
        print(f"error: no champion in {args.workspace}; run python -m flows.full first", file=sys.stderr)
        return 2
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(pointer["path"])
        raw = ServingModel(load_model(save_model(model, Path(tmp) / "raw")), "raw")
        keyed = ServingModel(load_model(save_model(model, Path(tmp) / "keyed", user_key=key)), "keyed", key)
    with duckdb.connect(str(args.workspace / "reclab.duckdb"), read_only=True) as con:
        query = f"SELECT DISTINCT user_id FROM {tables.CANONICAL['interactions']} ORDER BY 1"
        known = [u for (u,) in con.execute(query).fetchall()]
    users = np.random.default_rng(0).choice(known, args.n)
    times: dict[str, list[float]] = {"raw ids": [], "pseudonyms": []}
    for user in users[:50]:  # warm-up, both
        raw.recommend(str(user), 10), keyed.recommend(str(user), 10)
    for n, user in enumerate(users):
        order = (("raw ids", raw), ("pseudonyms", keyed)) if n % 2 else (("pseudonyms", keyed), ("raw ids", raw))
        for name, served in order:
            start = time.perf_counter()
            answer = served.recommend(str(user), 10)
            times[name].append(1000 * (time.perf_counter() - start))
            assert answer.strategy == "personalised", (name, user)  # a known user, known under both
    rows = {name: percentiles(values) for name, values in times.items()}
    ratio = {q: rows["pseudonyms"][q] / rows["raw ids"][q] for q in ("p50", "p95", "p99")}
    print(f"champion {pointer['version']} of {args.workspace.name}; {args.n} top-10 requests each, alternating")
    print(f"{'variant':<12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, r in rows.items():
        print(f"{name:<12}{r['p50']:>9.3f}{r['p95']:>9.3f}{r['p99']:>9.3f}")
    print(f"{'ratio':<12}" + "".join(f"{ratio[q]:>9.3f}" for q in ("p50", "p95", "p99")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"version": pointer["version"], "n": args.n, "rows": rows, "ratio": ratio}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
