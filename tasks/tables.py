"""The one registry of DuckDB tables: every table's name, columns and layer, and who writes it.

Layers: ``raw_*`` tables hold every input record exactly as read and are never modified once written;
canonical tables (``interactions``, ``items``, ``users``, ``tags``) are rebuilt from raw by one task;
``split_*`` and ``train_reviews`` are derived by the split stage; ``sources``, ``ingest_counts`` and
``runs`` record provenance. No other module spells a table name in SQL: use these constants.
"""

from __future__ import annotations

from readers.schema import COLUMNS, INTERACTIONS, ITEMS, ROLES, TAGS, USERS

# --- provenance --------------------------------------------------------------------------------------
SOURCES = "sources"  # one row per ingested file: role, path, sha256, size, record count (tasks.ingest)
INGEST_COUNTS = "ingest_counts"  # the accounting identity per role (tasks.ingest)
RUNS = "runs"  # one row per flow run (tasks.runs)
VALIDATIONS = "validations"  # one row per expectation checked, per run (tasks.validate)
DATA_CARD = "data_card"  # one row per prepare run: the data card (description, per-split checks, warnings) as JSON

# --- raw layer (immutable) ---------------------------------------------------------------------------
RAW = {role: f"raw_{role}" for role in ROLES}  # (tasks.ingest.load_raw)

# --- canonical layer (tasks.ingest.build_canonical) --------------------------------------------------
CANONICAL = {INTERACTIONS: "interactions", ITEMS: "items", USERS: "users", TAGS: "tags"}
QUARANTINE = "quarantine"  # rejected records with their reason
DUPLICATES = "duplicates"  # collapsed records and the line that was kept instead

# --- split layer (tasks.split) -----------------------------------------------------------------------
SPLITS = "splits"  # one row per split: protocol, seed, parameters, fold sizes
SPLIT_ASSIGNMENTS = "split_assignments"  # (split_id, user_id, item_id) -> fold
TRAIN_REVIEWS = "train_reviews"  # the only text later stages may read: training folds' reviews

# --- model and evaluation layer (tasks.train, tasks.evaluate) ----------------------------------------
MODEL_FITS = "model_fits"  # one row per (run, split, model): chosen hyperparameters, fit seconds (tasks.train)
LIGHTFM_TRIALS = "lightfm_trials"  # one row per (run, split, trial) of a LightFM search: config, validation NDCG
EVAL_PER_USER = "eval_per_user"  # per-user metric sums: the unit of bootstrap and paired tests (tasks.evaluate)
EVAL_RESULTS = "eval_results"  # aggregated metric values with 95% CIs per segment (tasks.evaluate)
EVAL_TESTS = "eval_tests"  # paired t / Wilcoxon tests between models, Holm-corrected (tasks.evaluate)
EVAL_DIFFERENCES = "eval_differences"  # per judged unit: paired differences, families, verdicts (the report's claims)
LM_EMBEDDINGS = "lm_embeddings"  # the fine-tuned LM's user and item vectors (tasks.train)
LM_PREDICTIONS = "lm_predictions"  # the LM's validation/test rating predictions (tasks.train)

# --- model registry (tasks.registry) -----------------------------------------------------------------
MODEL_REGISTRY = "model_registry"  # one row per published model bundle
PROMOTIONS = "promotions"  # one row per change of champion (first publish, promote, rollback), with its reason

# --- serving (tasks.serving_log; in <workspace>/serving.duckdb, written only by `python -m serve`) ------
SERVING_LOG = "serving_log"  # one row per answered request: time, user, A/B arm, model version, items, latency
ERASURES = (
    "erasures"  # one row per user erased on request: when, a keyed pseudonym (never the id), counts (tasks.erasure)
)

FOLDS = ("train", "validation", "test")

PROVENANCE = {"source_file": "VARCHAR", "line_no": "BIGINT"}

SCHEMAS: dict[str, dict[str, str]] = {
    SOURCES: {
        "role": "VARCHAR",
        "path": "VARCHAR",
        "format": "VARCHAR",
        "sha256": "VARCHAR",
        "bytes": "BIGINT",
        "records": "BIGINT",
        "header": "BLOB",
        "ingested_at": "TIMESTAMP",
    },
    INGEST_COUNTS: {
        "role": "VARCHAR",
        "source_file": "VARCHAR",
        "raw": "BIGINT",
        "kept": "BIGINT",
        "quarantined": "BIGINT",
        "exact_duplicates": "BIGINT",
        "superseded": "BIGINT",
        "text_duplicates": "BIGINT",
    },
    RUNS: {
        "run_id": "VARCHAR",
        "flow": "VARCHAR",
        "parameters": "JSON",
        "code_version": "VARCHAR",
        "input_fingerprint": "VARCHAR",
        "started_at": "TIMESTAMP",
        "finished_at": "TIMESTAMP",
        "status": "VARCHAR",
        "summary": "JSON",
    },
    DATA_CARD: {"run_id": "VARCHAR", "created_at": "TIMESTAMP", "warnings": "INTEGER", "card": "JSON"},
    VALIDATIONS: {
        "run_id": "VARCHAR",
        "table_name": "VARCHAR",
        "expectation": "VARCHAR",
        "column_name": "VARCHAR",
        "success": "BOOLEAN",
        "observed": "VARCHAR",
        "examples": "VARCHAR",
    },
    **{RAW[role]: {**PROVENANCE, "raw": "BLOB"} for role in ROLES},
    **{CANONICAL[role]: {**COLUMNS[role], **PROVENANCE} for role in ROLES},
    QUARANTINE: {
        "role": "VARCHAR",
        **PROVENANCE,
        "reason": "VARCHAR",
        "column_name": "VARCHAR",
        "raw_content": "VARCHAR",
    },
    DUPLICATES: {"role": "VARCHAR", **PROVENANCE, "kind": "VARCHAR", "kept_line_no": "BIGINT"},
    SPLITS: {
        "split_id": "VARCHAR",
        "protocol": "VARCHAR",
        "seed": "INTEGER",
        "parameters": "JSON",
        "n_train": "BIGINT",
        "n_validation": "BIGINT",
        "n_test": "BIGINT",
        "created_at": "TIMESTAMP",
    },
    SPLIT_ASSIGNMENTS: {"split_id": "VARCHAR", "user_id": "VARCHAR", "item_id": "VARCHAR", "fold": "VARCHAR"},
    MODEL_FITS: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "model": "VARCHAR",
        "params": "JSON",
        "fit_seconds": "DOUBLE",
        "eval_seconds": "DOUBLE",
        "extras": "JSON",
    },
    LIGHTFM_TRIALS: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "trial": "INTEGER",
        "config": "JSON",
        "validation_ndcg": "DOUBLE",
        "epochs": "INTEGER",
        "fit_seconds": "DOUBLE",
    },
    EVAL_PER_USER: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "model": "VARCHAR",
        "metric": "VARCHAR",
        "k": "INTEGER",
        "user_id": "VARCHAR",
        "user_segment": "VARCHAR",
        "item_segment": "VARCHAR",
        "num": "DOUBLE",
        "den": "DOUBLE",
    },
    EVAL_RESULTS: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "model": "VARCHAR",
        "metric": "VARCHAR",
        "k": "INTEGER",
        "segment": "VARCHAR",
        "value": "DOUBLE",
        "ci_low": "DOUBLE",
        "ci_high": "DOUBLE",
        "n_users": "BIGINT",
    },
    EVAL_TESTS: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "metric": "VARCHAR",
        "k": "INTEGER",
        "model_a": "VARCHAR",
        "model_b": "VARCHAR",
        "mean_diff": "DOUBLE",
        "n_users": "BIGINT",
        "t_p": "DOUBLE",
        "wilcoxon_p": "DOUBLE",
        "t_p_holm": "DOUBLE",
        "wilcoxon_p_holm": "DOUBLE",
    },
    EVAL_DIFFERENCES: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",  # the judged unit: a split, or a k-fold protocol's folds together (kfold_s0)
        "metric": "VARCHAR",
        "k": "INTEGER",
        "segment": "VARCHAR",
        "model": "VARCHAR",
        "reference": "VARCHAR",
        "kind": "VARCHAR",
        "family": "VARCHAR",  # primary (the contenders vs the reference: the answer) or secondary (exploratory)
        "reference_rule": "VARCHAR",  # how the reference was chosen: "validation" (pre-registered)
        "reference_validation": "DOUBLE",  # the reference's validation value of the task's metric
        "test_best": "VARCHAR",  # the traditional model best on test (descriptive, never the reference)
        "n_users": "BIGINT",
        "value": "DOUBLE",
        "reference_value": "DOUBLE",
        "diff": "DOUBLE",
        "se": "DOUBLE",
        "ci_low": "DOUBLE",
        "ci_high": "DOUBLE",
        "mean_user_diff": "DOUBLE",
        "median_user_diff": "DOUBLE",
        "share_better": "DOUBLE",
        "share_worse": "DOUBLE",
        "t_p": "DOUBLE",
        "wilcoxon_p": "DOUBLE",
        "t_p_adj": "DOUBLE",  # corrected within the family (primary: Holm; secondary: Benjamini-Hochberg)
        "wilcoxon_p_adj": "DOUBLE",
        "correction": "VARCHAR",
        "family_size": "INTEGER",
        "mdd": "DOUBLE",  # minimum detectable difference: 80% power at the family's alpha / family_size
        "verdict": "VARCHAR",
        "tests_disagree": "BOOLEAN",
        "note": "VARCHAR",  # why a row is not judged (the data card's reason and what to do)
    },
    LM_EMBEDDINGS: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "kind": "VARCHAR",
        "id": "VARCHAR",
        "vector": "FLOAT[]",
    },
    LM_PREDICTIONS: {
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "fold": "VARCHAR",
        "user_id": "VARCHAR",
        "item_id": "VARCHAR",
        "prediction": "DOUBLE",
    },
    MODEL_REGISTRY: {
        "version": "VARCHAR",
        "run_id": "VARCHAR",
        "split_id": "VARCHAR",
        "protocol": "VARCHAR",
        "path": "VARCHAR",
        "published_at": "TIMESTAMP",
        "code_version": "VARCHAR",
        "data_fingerprint": "VARCHAR",
        "metrics": "JSON",
        "parameters": "JSON",
    },
    PROMOTIONS: {
        "decided_at": "TIMESTAMP",
        "action": "VARCHAR",
        "champion": "VARCHAR",
        "previous": "VARCHAR",
        "reason": "VARCHAR",
        "details": "JSON",
    },
    SERVING_LOG: {
        "served_at": "TIMESTAMP",
        "endpoint": "VARCHAR",
        "user_id": "VARCHAR",
        "arm": "VARCHAR",
        "model_version": "VARCHAR",
        "items": "VARCHAR[]",
        "latency_ms": "DOUBLE",
    },
    ERASURES: {
        "erasure_id": "VARCHAR",
        "erased_at": "TIMESTAMP",
        "user_key": "VARCHAR",  # the user's keyed pseudonym (models.serving.pseudonym): a later request is known
        "counts": "JSON",  # rows removed per table, files and folders removed, bundles marked
    },
    TRAIN_REVIEWS: {
        "split_id": "VARCHAR",
        "user_id": "VARCHAR",
        "item_id": "VARCHAR",
        "rating": "DOUBLE",
        "timestamp": "BIGINT",
        "summary": "VARCHAR",
        "review_text": "VARCHAR",
    },
}

# A user's rows in each table that holds user ids (raw ids; the serving log's own database holds pseudonyms), as
# a condition on one parameter, the id: what erasing a user deletes (tasks.erasure). The raw, quarantine and
# duplicates tables are found through the canonical rows' provenance. Every table with a user column is listed
# here (tests/test_erasure.py checks), so a new one cannot escape an erasure.
USER_ROWS: dict[str, str] = {
    CANONICAL[INTERACTIONS]: "user_id = ?",
    CANONICAL[USERS]: "user_id = ?",
    CANONICAL[TAGS]: "user_id = ?",
    SPLIT_ASSIGNMENTS: "user_id = ?",
    TRAIN_REVIEWS: "user_id = ?",
    EVAL_PER_USER: "user_id = ?",
    LM_PREDICTIONS: "user_id = ?",
    LM_EMBEDDINGS: "kind = 'user' AND id = ?",
}

# Tables that hold every interaction's text, whatever its fold. Everything else is "training side":
# it must never contain text from a validation or test interaction (tests/test_leakage.py checks all).
ALL_FOLDS_TEXT = {*RAW.values(), CANONICAL[INTERACTIONS], CANONICAL[TAGS], QUARANTINE, DUPLICATES}


def ddl(table: str, *, replace: bool = False, temp_name: str | None = None) -> str:
    """``CREATE TABLE`` statement for a registered table (or a temporary table of its layout)."""
    columns = ", ".join(f'"{name}" {dtype}' for name, dtype in SCHEMAS[table].items())
    verb = "CREATE OR REPLACE" if replace or temp_name else "CREATE"
    target = f"TEMP TABLE {temp_name}" if temp_name else f"TABLE {table}"
    return f"{verb} {target} ({columns})"


def columns(table: str) -> list[str]:
    return list(SCHEMAS[table])
