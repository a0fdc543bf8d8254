"""Loaded by Python first when this folder is on PYTHONPATH: imports of what a bare GPU machine lacks fail (tests/test_gpu_pack.py)."""

import sys

BLOCKED = {"duckdb", "prefect", "great_expectations", "lightfm", "cornac", "implicit", "surprise", "fastapi"}


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: a bare GPU machine does not have it")
        return None


sys.meta_path.insert(0, _Block())
