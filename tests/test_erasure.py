"""A user's data erased on request: every row of theirs gone from every table (raw through provenance), the
serving log and the working folders, counted before and after; other users untouched; published bundles trained
on them marked; the next run trains without them and says so; an unknown user is one clear line."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
from builders import TINY_BERT, review, write_lines

from models.serving.bundle import load_model
from models.serving.pseudonym import pseudonym
from models.serving.published import ERASED_FILE
from readers import InputError
from tasks import tables
from tasks.erasure import _names_user, forget_user
from tasks.serving_log import SERVING_DB
from tasks.store import Workspace, connect, ensure

GONE, KEPT = "u1", "u2"


def test_every_table_with_a_user_column_is_erased():
    """A new table holding user ids must say how erasure finds a user's rows (tables.USER_ROWS)."""
    exempt = {tables.SERVING_LOG}  # its own database, pseudonyms: erased by tasks.erasure._delete_served
    holding = {t for t, columns in tables.SCHEMAS.items() if "user_id" in columns} - exempt
    assert holding <= set(tables.USER_ROWS), sorted(holding - set(tables.USER_ROWS))
    assert tables.LM_EMBEDDINGS in tables.USER_ROWS  # its user ids sit in ``id`` beside kind = 'user'


def test_a_quarantined_line_is_the_users_when_it_names_them_in_a_user_field():
    pattern = re.compile(_names_user("u1"))
    assert pattern.search('{"reviewerID": "u1", "asin": "B1", "overall": "bad"}')
    assert pattern.search('{"user_id":"u1","rating":9}')
    assert pattern.search("u1,31,,1260759144") and pattern.search("u1::F::1") and pattern.search("u1\t5\t\t0")
    assert not pattern.search('{"reviewerID": "u10", "asin": "u1"}')  # another user; an item named like them
    assert not pattern.search("2,u1,3.0,1") and not pattern.search("u10,31,2.5,1")


@pytest.fixture(scope="module")
def erased(prefect_harness, tmp_path_factory):
    """The full flow on 48 reviews of 6 users (tiny LM), a serving log, then ``u1`` erased: (workspace,
    per-table counts of u1's and everyone's rows before and after, the erasure's summary, the full flow's
    parameters)."""
    from flows.full import full
    from flows.params import FullParams, PrepareParams, TrainSettings
    from models.evaluation import EvalConfig
    from models.registry import TrainConfig

    tmp_path = tmp_path_factory.mktemp("erasure")
    records = [review(f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i) for i in range(48)]
    records.append(review(GONE, "i4", 2, ts=1_400_000_100))  # u1 rates i4 again: one line supersedes the other
    path = write_lines(tmp_path / "r.json", [*records, '{"reviewerID": "u1", "asin": "i3", "overall": "bad"}'])
    tiny_lm = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1, "progress_bar": False}
    models = ("global_mean", "bias_als", "popularity", "lm_two_tower", "fusion")
    params = FullParams(
        prepare=PrepareParams(
            data=str(path),
            workspace=str(tmp_path / "ws"),
            split={"protocols": ("random",)},
            validation={"max_quarantine_fraction": 0.05},  # the one bad line of u1's, 1 in 50
        ),
        train=TrainSettings(train=TrainConfig(models=models, lm_overrides=tiny_lm), evaluation=EvalConfig(n_boot=100)),
    )
    full(params)
    workspace = Workspace(tmp_path / "ws")
    key = workspace.user_key()
    with connect(workspace.root / SERVING_DB) as con:  # two requests each, logged as the service logs them
        ensure(con, tables.SERVING_LOG)
        for user in (GONE, KEPT, GONE, KEPT):
            con.execute(
                f"INSERT INTO {tables.SERVING_LOG} VALUES (now(), '/recommend', ?, 'champion', 'v', ['i1'], 1.0)",
                [pseudonym(user, key)],
            )
    before = counts(workspace)
    summary = forget_user(workspace, GONE)
    return workspace, before, counts(workspace), summary, params


def counts(workspace: Workspace) -> dict[str, tuple[int, int]]:
    """Per table: (rows of u1, all rows); raw and quarantine by the id in the line's bytes."""
    out = {}
    with duckdb.connect(str(workspace.db), read_only=True) as con:
        for table, condition in tables.USER_ROWS.items():
            mine = con.execute(f"SELECT count(*) FROM {table} WHERE {condition}", [GONE]).fetchone()[0]
            out[table] = (mine, con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        for table, text in ((tables.RAW["interactions"], "decode(raw)"), (tables.QUARANTINE, "raw_content")):
            mine = con.execute(f"SELECT count(*) FROM {table} WHERE contains({text}, ?)", [f'"{GONE}"']).fetchone()[0]
            out[table] = (mine, con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        out[tables.DUPLICATES] = (None, con.execute(f"SELECT count(*) FROM {tables.DUPLICATES}").fetchone()[0])
    key = workspace.user_key()
    with duckdb.connect(str(workspace.root / SERVING_DB), read_only=True) as con:
        query = f"SELECT count(*) FROM {tables.SERVING_LOG} WHERE user_id = ?"
        out[tables.SERVING_LOG] = (con.execute(query, [pseudonym(GONE, key)]).fetchone()[0], None)
    return out


@pytest.mark.slow
def test_forget_removes_every_row_of_the_user_and_no_one_elses(erased):
    _, before, after, summary, _ = erased
    for table in (*tables.USER_ROWS, tables.RAW["interactions"], tables.QUARANTINE, tables.SERVING_LOG):
        if table in (tables.CANONICAL["tags"],):
            continue  # no tags in this dataset
        mine, total = before[table]
        assert mine > 0, f"{table}: the fixture gives u1 no rows to erase"
        assert after[table][0] == 0, f"{table}: {after[table][0]} row(s) of u1 left"
        if total is not None:
            assert after[table][1] == total - mine, f"{table}: another user's rows were removed"
    assert before[tables.DUPLICATES][1] - after[tables.DUPLICATES][1] == 1  # u1's duplicate line, provenance
    assert summary["tables"][tables.RAW["interactions"]] == before[tables.RAW["interactions"]][0]
    assert summary["serving_log"] == 2 and summary["tables"][tables.CANONICAL["interactions"]] == 8


@pytest.mark.slow
def test_the_erasure_is_recorded_without_the_id_and_the_bundles_trained_on_them_are_marked(erased):
    workspace, _, _, summary, _ = erased
    with duckdb.connect(str(workspace.db), read_only=True) as con:
        rows = con.execute(f"SELECT erasure_id, user_key, counts FROM {tables.ERASURES}").fetchall()
    assert len(rows) == 1 and rows[0][1] == pseudonym(GONE, workspace.user_key())
    assert f'"{GONE}"' not in json.dumps(rows, default=str)
    assert summary["folders"] == ["fits", "runs", "text_states"] and not (workspace.root / "runs").exists()
    (version,) = summary["bundles_marked"]
    assert json.loads((workspace.root / "registry" / version / ERASED_FILE).read_text())[0]["erasure_id"] == rows[0][0]


@pytest.mark.slow
def test_forgetting_again_or_an_unknown_user_is_one_clear_message(erased, capsys):
    from serve.registry import main

    workspace, *_ = erased
    with pytest.raises(InputError, match=r"user 'u1' has no rows .*\(erased \d{4}-\d\d-\d\d"):
        forget_user(workspace, GONE)
    assert main(["forget", "nobody", "--workspace", str(workspace.root)]) == 2  # a user error
    err = capsys.readouterr().err
    assert "user 'nobody' has no rows" in err and "Traceback" not in err
    with duckdb.connect(str(workspace.db), read_only=True) as con:  # nothing recorded for a failed erasure
        assert con.execute(f"SELECT count(*) FROM {tables.ERASURES}").fetchone()[0] == 1


@pytest.mark.slow
def test_the_next_run_trains_without_the_user_and_says_how_many_were_erased(erased):
    from flows.full import full

    workspace, _, _, _, params = erased
    full(params)
    after = counts(workspace)
    for table in tables.USER_ROWS:
        assert after[table][0] == 0, f"{table}: u1 is back"
    with duckdb.connect(str(workspace.db), read_only=True) as con:
        (summary,) = con.execute(
            f"SELECT summary FROM {tables.RUNS} WHERE flow = 'train' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    assert json.loads(summary)["erased_since_last_training"] == 1
    # the champion trained on u1 gives way to the model published without them, whatever the metrics
    from models.serving.published import read_champion, registry_dir

    champion = read_champion(registry_dir(workspace.root))
    assert not (workspace.root / "registry" / champion["version"] / ERASED_FILE).exists()
    with duckdb.connect(str(workspace.db), read_only=True) as con:
        action, reason = con.execute(
            f"SELECT action, reason FROM {tables.PROMOTIONS} ORDER BY decided_at DESC LIMIT 1"
        ).fetchone()
    assert action == "promote" and "erased since" in reason
    served = load_model(registry_dir(workspace.root) / champion["version"])
    assert pseudonym(GONE, workspace.user_key()) not in set(served.user_ids)  # the service no longer knows them
