"""The cross-dataset study's tasks: read each completed dataset's run tables from its workspace, and write
the study report (Markdown + HTML, Prefect artifacts). The report's content is ``reports/study.py``."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from tasks.report import load_run_tables
from tasks.store import write_atomically

ARTIFACT_KEY = "reclab-study"


@task(cache_policy=NONE)
def collect_dataset(name: str, outcome: dict) -> dict:
    """What the study report needs of one dataset: its outcome, and for a completed experiment its run's
    paired differences, fits, splits and data card."""
    if outcome.get("status") != "completed":
        return {"name": name, "status": "failed", "error": outcome.get("error", "unknown error")}
    frames = load_run_tables(Path(outcome["database"]), outcome["run_id"])
    return {
        "name": name,
        "status": "completed",
        "run_id": outcome["run_id"],
        "seconds": outcome.get("seconds"),
        "differences": frames["differences"],
        "fits": frames["fits"],
        "splits": frames["splits"],
        "card": frames["card"],
    }


@task(cache_policy=NONE)
def write_study_report(datasets: list[dict], out_dir: Path, study_id: str) -> dict:
    """Render and write ``study.md`` (+ ``figures/``) and ``study.html``; publish the part before the cost
    as a Markdown artifact and the verdict table as a table artifact."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from reports.render import to_html, to_markdown
    from reports.study import dataset_verdicts, study_blocks

    meta = {"study_id": study_id, "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    blocks = study_blocks(datasets, meta)
    markdown, figures = to_markdown(blocks)
    out_dir = Path(out_dir)
    for relative, data in figures.items():
        write_atomically(out_dir / relative, data)
    write_atomically(out_dir / "study.md", markdown.encode())
    write_atomically(out_dir / "study.html", to_html(blocks).encode())
    paths = {"markdown": str(out_dir / "study.md"), "html": str(out_dir / "study.html")}
    text, _ = to_markdown([b for b in blocks if b[0] != "figure"])
    create_markdown_artifact(markdown=text + f"\n\nWith plots: `{paths['html']}`\n", key=ARTIFACT_KEY)
    verdicts = dataset_verdicts(datasets)
    if not verdicts.empty:
        create_table_artifact(table=verdicts.to_dict(orient="records"), key=f"{ARTIFACT_KEY}-verdict")
    return paths
