"""Report: read one run's evaluation tables, write the Markdown + HTML report atomically, publish artifacts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from readers import InputError
from tasks import tables
from tasks.store import connect, table_exists, write_atomically

ARTIFACT_KEY = "reclab-report"


def load_run_tables(db: Path, run_id: str) -> dict[str, pd.DataFrame]:
    """The run's ``eval_results``, ``eval_tests``, ``model_fits`` rows and the ``splits`` they used."""
    with connect(db, read_only=True) as con:
        if not all(
            table_exists(con, t) for t in (tables.EVAL_RESULTS, tables.EVAL_TESTS, tables.MODEL_FITS, tables.SPLITS)
        ):
            raise InputError(f"run {run_id} has no evaluation results in {db}: nothing to report")
        frames = {
            name: con.execute(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY ALL", [run_id]).df()
            for name, table in (
                ("results", tables.EVAL_RESULTS),
                ("tests", tables.EVAL_TESTS),
                ("fits", tables.MODEL_FITS),
            )
        }
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

    blocks = build(frames["results"], frames["tests"], frames["fits"], frames["splits"], meta)
    markdown, figures = to_markdown(blocks)
    for relative, data in figures.items():
        write_atomically(out_dir / relative, data)
    write_atomically(out_dir / "report.md", markdown.encode())  # the HTML last: its presence means "complete"
    write_atomically(out_dir / "report.html", to_html(blocks).encode())
    return {"markdown": str(out_dir / "report.md"), "html": str(out_dir / "report.html"), "blocks": blocks}


def publish_artifacts(blocks: list, paths: dict) -> None:
    """The conclusions and the headline tables as Prefect artifacts (Markdown + one table per split)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from reports.render import to_markdown

    text_only = [b for b in blocks if b[0] != "figure"]
    markdown, _ = to_markdown(text_only)
    markdown += f"\n\nFull report with plots: `{paths['html']}`\n"
    create_markdown_artifact(markdown=markdown, key=ARTIFACT_KEY, description="reclab experiment report")
    headings = [b for b in blocks if b[0] in ("h2", "table")]
    for heading, table in zip(headings, headings[1:], strict=False):
        if heading[0] == "h2" and heading[1].startswith("Split ") and table[0] == "table":
            split_id = heading[1].split()[1]
            key = f"{ARTIFACT_KEY}-{split_id}".lower().replace("_", "-")
            create_table_artifact(
                table=table[1].to_dict(orient="records"),
                key=key,
                description=f"{split_id}: every model x headline metric, value [95% CI]",
            )


@task(cache_policy=NONE)
def write_report(db: Path, run_id: str, out_dir: Path, meta: dict) -> dict:
    """Build the run's report from DuckDB, write it under ``out_dir`` and publish it as artifacts."""
    frames = load_run_tables(db, run_id)
    if frames["results"].empty:
        raise InputError(f"run {run_id} has no evaluation results in {db}: nothing to report")
    with connect(db, read_only=True) as con:
        started = con.execute(f"SELECT started_at FROM {tables.RUNS} WHERE run_id = ?", [run_id]).fetchone()
    created = f"started {started[0]:%Y-%m-%d %H:%M} UTC" if started and started[0] else ""
    written = write_report_files(frames, Path(out_dir), {"created": created, **meta, "run_id": run_id})
    publish_artifacts(written.pop("blocks"), written)
    return written
