"""What the benchmark scripts share: a dataset prepared into DuckDB without Prefect, a stage run in its own
process, percentiles, and the JSON file each script writes beside the table it prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def prepared(
    path: Path,
    db: str | Path = ":memory:",
    protocols: tuple[str, ...] | None = None,
    validate: bool = False,
    ingest=None,
):
    """A DuckDB connection holding ``path`` ingested (with ``ingest``, an IngestConfig; the default one when
    None), validated when asked, and split with seed 0."""
    import duckdb

    from models.evaluation.split import DEFAULT_PROTOCOLS, SplitConfig
    from readers import resolve_dataset
    from tasks import IngestConfig
    from tasks.ingest import build_canonical_tables, load_raw_tables
    from tasks.store import DUCKDB_CONFIG

    spec = resolve_dataset(path)
    con = duckdb.connect(str(db), config=DUCKDB_CONFIG)  # RECLAB_DUCKDB_MEMORY_LIMIT, as the flows
    load_raw_tables(con, spec)
    build_canonical_tables(con, spec, ingest or IngestConfig())
    if validate:
        from data_checks import ValidationConfig
        from tasks.validate import validate_workspace

        validate_workspace(con, spec, ValidationConfig(data_docs=False), "bench")
    from tasks.split import split_workspace

    split_workspace(con, SplitConfig(seed=0, protocols=protocols or DEFAULT_PROTOCOLS))
    return con


def stage_in_process(cmd: list[str], label: str, cwd: Path | None = None) -> dict:
    """Run one benchmark stage as its own process (``cmd``, which prints ``RESULT <json>``; its peak memory is
    its own) and return that JSON; on failure print its stderr's tail and stop, naming ``label``."""
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"stage {label} failed")
    return json.loads(lines[-1][7:])


def percentiles(values: list[float]) -> dict[str, float]:
    """Latency percentiles (p50, p95, p99), the maximum and the count."""
    import numpy as np

    a = np.asarray(values)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)} | {"max": float(a.max()), "n": len(a)}


def write_json(path: Path, results) -> None:
    """Write a benchmark's results to ``path`` (folders made; numpy values as plain numbers, anything else
    JSON cannot hold as its text) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=_plain))
    print(f"\nwrote {path}")


def _plain(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)
