"""Benchmark helpers whose figures end up in the README: checked by hand on tiny inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fit_costs_lines_up_models_and_totals_each_split():
    fit_costs = _script("fit_costs")
    before = {("s1", "ease"): (10.0, 1.5), ("s1", "svd"): (2.0, None), ("s2", "ease"): (4.0, 1.0)}
    after = {("s1", "ease"): (8.0, 1.5), ("s2", "ease"): (3.0, 1.0), ("s2", "lm"): (5.0, 2.0)}
    rows = fit_costs.table({"before": before, "after": after})
    by_key = {(row["split"], row["model"]): row for row in rows}
    assert list(by_key) == [
        ("s1", "ease"),
        ("s1", "svd"),
        ("s2", "ease"),
        ("s2", "lm"),
        ("s1", "(total)"),
        ("s2", "(total)"),
    ]
    assert by_key["s1", "svd"]["after_seconds"] is None  # a model one run did not fit
    assert by_key["s2", "lm"]["before_seconds"] is None
    assert by_key["s1", "(total)"]["before_seconds"] == 12.0 and by_key["s1", "(total)"]["after_seconds"] == 8.0
    assert by_key["s2", "(total)"]["before_seconds"] == 4.0 and by_key["s2", "(total)"]["after_seconds"] == 8.0


def test_fit_costs_refuses_a_folder_without_a_database(tmp_path, capsys):
    fit_costs = _script("fit_costs")
    with pytest.raises(SystemExit, match="reclab.duckdb does not exist"):
        fit_costs.main([str(tmp_path)])
