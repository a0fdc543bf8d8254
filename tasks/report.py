"""Report: read one run's evaluation tables, write the Markdown + HTML report atomically, publish artifacts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from models.evaluation.comparisons import DIFFERENCE_COLUMNS
from readers import InputError
from tasks import tables
from tasks.datacard import latest_card
from tasks.store import Workspace, connect, table_exists, write_atomically

ARTIFACT_KEY = "reclab-report"


def load_run_tables(db: Path, run_id: str) -> dict[str, pd.DataFrame]:
    """The run's ``eval_results``, ``eval_differences``, ``model_fits`` rows, the ``splits`` they used and the
    workspace's latest data card (``card``; None when prepare wrote none)."""
    with connect(db, read_only=True) as con:
        if not all(table_exists(con, t) for t in (tables.EVAL_RESULTS, tables.MODEL_FITS, tables.SPLITS)):
            raise InputError(f"run {run_id} has no evaluation results in {db}: nothing to report")
        frames = {
            name: con.execute(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id]).df()
            for name, table in (
                ("results", tables.EVAL_RESULTS),
                ("fits", tables.MODEL_FITS),
            )
        }
        frames["differences"] = (
            con.execute(f"SELECT * FROM {tables.EVAL_DIFFERENCES} WHERE run_id = ? ORDER BY ALL", [run_id]).df()
            if table_exists(con, tables.EVAL_DIFFERENCES)
            else pd.DataFrame(columns=["split_id", *DIFFERENCE_COLUMNS])
        )
        frames["card"] = latest_card(con)
        frames["splits"] = con.execute(
            f"SELECT * FROM {tables.SPLITS} WHERE split_id IN (SELECT DISTINCT split_id FROM {tables.EVAL_RESULTS} "
            "WHERE run_id = ?) ORDER BY split_id",
            [run_id],
        ).df()
    return frames


def latest_evaluated_run(db: Path) -> str:
    """The run id of the most recently finished run with evaluation results."""
    with connect(db, read_only=True) as con:
        row = (
            None
            if not (table_exists(con, tables.EVAL_RESULTS) and table_exists(con, tables.RUNS))
            else con.execute(
                f"""SELECT e.run_id FROM (SELECT DISTINCT run_id FROM {tables.EVAL_RESULTS}) e
                LEFT JOIN {tables.RUNS} r USING (run_id) ORDER BY r.started_at DESC NULLS LAST LIMIT 1"""
            ).fetchone()
        )
    if row is None:
        raise InputError(f"no evaluated run in {db}: run `python -m flows.full` (or flows.train) first")
    return row[0]


def write_report_files(frames: dict[str, pd.DataFrame], out_dir: Path, meta: dict) -> dict:
    """Render and write ``report.md`` (+ ``figures/``) and the self-contained ``report.html``."""
    from reports.render import build, to_html, to_markdown

    blocks = build(frames["results"], frames["differences"], frames["fits"], frames["splits"], meta, frames.get("card"))
    markdown, figures = to_markdown(blocks)
    for relative, data in figures.items():
        write_atomically(out_dir / relative, data)
    write_atomically(out_dir / "report.md", markdown.encode())  # the HTML last: its presence means "complete"
    write_atomically(out_dir / "report.html", to_html(blocks).encode())
    return {"markdown": str(out_dir / "report.md"), "html": str(out_dir / "report.html"), "blocks": blocks}


def publish_artifacts(blocks: list, paths: dict, verdict: pd.DataFrame | None = None) -> None:
    """The report as Prefect artifacts: Markdown that leads with the verdict (everything before the appendix,
    without figures) and the primary comparisons' table (``verdict``)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from reports.render import to_markdown

    appendix = next((i for i, b in enumerate(blocks) if b[0] == "h2" and b[1] == "Appendix"), len(blocks))
    text_only = [b for b in blocks[:appendix] if b[0] != "figure"]
    markdown, _ = to_markdown(text_only)
    markdown += f"\n\nFull report with plots and the appendix: `{paths['html']}`\n"
    create_markdown_artifact(markdown=markdown, key=ARTIFACT_KEY, description="reclab experiment report")
    if verdict is not None and not verdict.empty:
        create_table_artifact(
            table=verdict.to_dict(orient="records"),
            key=f"{ARTIFACT_KEY}-verdict",
            description="the primary comparisons: per unit and task, the LM and the fusion against the reference",
        )


@task(cache_policy=NONE)
def write_report(workspace: Workspace, run_id: str, out_dir: Path, meta: dict) -> dict:
    """Build the run's report from DuckDB, write it under ``out_dir`` and publish it as artifacts."""
    frames = load_run_tables(workspace.db, run_id)
    if frames["results"].empty:
        raise InputError(f"run {run_id} has no evaluation results in {workspace.db}: nothing to report")
    with connect(workspace.db, read_only=True) as con:
        started = con.execute(f"SELECT started_at FROM {tables.RUNS} WHERE run_id = ?", [run_id]).fetchone()
    created = f"started {started[0]:%Y-%m-%d %H:%M} UTC" if started and started[0] else ""
    written = write_report_files(frames, Path(out_dir), {"created": created, **meta, "run_id": run_id})
    from reports.conclusions import verdict_rows

    verdict = verdict_rows(frames["differences"], frames["splits"]) if "family" in frames["differences"] else None
    publish_artifacts(written.pop("blocks"), written, verdict)
    return written
