"""A user's own tables: CSV/Parquet interactions with tables of items and users (their own column mappings,
Parquet list columns), and each input a user gets wrong the first time answered with what to do, word for
word."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import NOW

from readers import ColumnMapping, InputError, ItemMapping, UserMapping, iter_records, parser_for, resolve_dataset
from readers.formats import layout_for
from readers.records import read_header


def parse_all(spec, role):
    path = spec.files[role]
    layout = layout_for(spec, role)
    parse = parser_for(spec, role, read_header(path) if layout == "csv" else None, NOW)
    return [parse(r.raw) for r in iter_records(path, layout)]


def error_of(spec, role: str) -> str:
    """The message reading ``role`` of ``spec`` stops with."""
    with pytest.raises(InputError) as err:
        parse_all(spec, role)
    return str(err.value)


def write_pair(folder):
    """ratings.csv (no timestamps: a warehouse export) and items.csv (its own column names)."""
    (folder / "ratings.csv").write_text("user_id,item_id,rating\nu1,i1,5\nu1,i2,3\nu2,i1,4\nu2,i3,2\n")
    (folder / "items.csv").write_text(
        "sku,name,body,cat\ni1,Red Book,A novel in red,books|fiction\ni2,Blue Pen,,office\ni3,Green Mug,Holds tea,\n"
    )
    return folder / "ratings.csv", folder / "items.csv"


def spec_of(folder, **extra):
    ratings, items = write_pair(folder)
    return resolve_dataset(
        ratings,
        mapping=ColumnMapping.parse("timestamp="),
        items=items,
        items_mapping=ItemMapping.parse("item_id=sku,title=name,description=body,categories=cat"),
        **extra,
    )


def test_a_csv_pair_reads_item_text_and_categories(tmp_path):
    """An explicit --map makes ratings.csv tabular (not MovieLens, as its name alone would); the items table's
    columns come from --items-map, categories stay '|'-joined, an empty cell is None."""
    spec = spec_of(tmp_path)
    assert spec.format == "tabular" and not spec.detected
    assert parse_all(spec, "items") == [
        {
            "item_id": "i1",
            "title": "Red Book",
            "description": "A novel in red",
            "brand": None,
            "category": "books|fiction",
            "genres": None,
            "price": None,
        },
        {
            "item_id": "i2",
            "title": "Blue Pen",
            "description": None,
            "brand": None,
            "category": "office",
            "genres": None,
            "price": None,
        },
        {
            "item_id": "i3",
            "title": "Green Mug",
            "description": "Holds tea",
            "brand": None,
            "category": None,
            "genres": None,
            "price": None,
        },
    ]
    assert [r["timestamp"] for r in parse_all(spec, "interactions")] == [None] * 4


def test_parquet_tables_with_a_list_column_and_users(tmp_path, ingest):
    """Parquet items with several categories in a list column, and a users table with its attributes."""
    pq.write_table(pa.table({"u": ["a", "b"], "i": ["x", "y"], "r": [4.0, 2.0]}), tmp_path / "r.parquet")
    pq.write_table(
        pa.table({"item_id": ["x", "y"], "title": ["Ex", "Why"], "tags": [["one", "two"], []], "price": [9.5, None]}),
        tmp_path / "items.parquet",
    )
    pq.write_table(pa.table({"customer": ["a", "b"], "age": [31, None], "gender": ["F", "M"]}), tmp_path / "u.parquet")
    spec = resolve_dataset(
        tmp_path / "r.parquet",
        mapping=ColumnMapping.parse("user_id=u,item_id=i,rating=r,timestamp="),
        items=tmp_path / "items.parquet",
        items_mapping=ItemMapping.parse("categories=tags"),
        users=tmp_path / "u.parquet",
        users_mapping=UserMapping.parse("user_id=customer"),
    )
    items = parse_all(spec, "items")
    assert [(r["item_id"], r["title"], r["category"], r["price"]) for r in items] == [
        ("x", "Ex", "one|two", 9.5),
        ("y", "Why", None, None),
    ]
    users = parse_all(spec, "users")
    assert users == [
        {"user_id": "a", "age": 31, "gender": "F", "occupation": None, "zip_code": None},
        {"user_id": "b", "age": None, "gender": "M", "occupation": None, "zip_code": None},
    ]
    con, accounting = ingest(spec)
    assert accounting["users"]["kept"] == 2 and con.execute("SELECT count(*) FROM raw_users").fetchone()[0] == 2
    assert con.execute("SELECT user_id, age, gender FROM users ORDER BY user_id").fetchall() == [
        ("a", 31, "F"),
        ("b", None, "M"),
    ]
    assert con.execute("SELECT category FROM items WHERE item_id = 'x'").fetchone()[0] == "one|two"


def test_ingest_keeps_the_items_table_and_accounts_for_it(tmp_path, ingest):
    """The items table goes through ingest as the Amazon and MovieLens metadata do: raw kept, canonical rows,
    its accounting; its titles are what the LM's item profiles read."""
    from models.lm.profiles import METADATA_ONLY, build_profiles

    con, accounting = ingest(spec_of(tmp_path))
    assert accounting["items"]["raw"] == 3 and accounting["items"]["kept"] == 3
    assert con.execute("SELECT count(*) FROM raw_items").fetchone()[0] == 3
    items = con.execute("SELECT * FROM items ORDER BY item_id").df()
    assert list(items["title"]) == ["Red Book", "Blue Pen", "Green Mug"]
    train = con.execute("SELECT user_id, item_id, rating, review_text, summary FROM interactions").df()
    profiles = build_profiles(train, items, folds=2, seed=0)
    assert profiles.pieces_of(("item", "i1", METADATA_ONLY)) == (
        "title: Red Book. category: books, fiction. description: A novel in red",
    )


def test_an_item_row_without_its_id_is_quarantined(tmp_path, ingest):
    ratings, items = write_pair(tmp_path)
    items.write_text("sku,name\ni1,Red Book\n,Nameless\n")
    spec = resolve_dataset(
        ratings,
        mapping=ColumnMapping.parse("timestamp="),
        items=items,
        items_mapping=ItemMapping.parse("item_id=sku,title=name"),
    )
    con, accounting = ingest(spec)
    assert accounting["items"]["quarantined"] == 1
    reason = con.execute("SELECT reason FROM quarantine WHERE role = 'items'").fetchone()[0]
    assert reason == "missing sku"


# --- input a user gets right the first time ---------------------------------------------------------------


def test_a_file_named_like_movielens_without_its_columns_says_what_was_detected(tmp_path):
    ratings, _ = write_pair(tmp_path)
    spec = resolve_dataset(ratings)
    assert spec.format == "movielens" and spec.detected
    assert error_of(spec, "interactions") == (
        f"{ratings}: required column(s) ['userId', 'movieId', 'timestamp'] are missing; the header has "
        "['user_id', 'item_id', 'rating'] (the format 'movielens' was detected from the name ratings.csv; if the "
        "file is not movielens, pass --format tabular, or a --map of its columns)"
    )


def test_a_missing_timestamp_says_how_to_declare_it_absent(tmp_path):
    ratings, _ = write_pair(tmp_path)
    spec = resolve_dataset(ratings, "tabular")
    assert error_of(spec, "interactions") == (
        f"{ratings}: required column(s) ['timestamp'] are missing; the header has ['user_id', 'item_id', "
        "'rating']. If the file has no timestamps, declare it with --map timestamp= (the temporal protocol then "
        "cannot run: split with --protocols kfold random cold_items); if another column holds them, --map "
        "timestamp=<column>"
    )


def test_a_mapping_with_another_format_is_refused(tmp_path):
    ratings, _ = write_pair(tmp_path)
    with pytest.raises(InputError) as err:
        resolve_dataset(ratings, "movielens", mapping=ColumnMapping.parse("timestamp="))
    assert str(err.value) == (
        "--map describe(s) tabular input, but --format movielens was given: drop --format (a mapping means "
        "tabular) or drop the mapping"
    )


def test_a_named_items_column_that_is_missing_is_named(tmp_path):
    ratings, items = write_pair(tmp_path)
    spec = resolve_dataset(
        ratings,
        mapping=ColumnMapping.parse("timestamp="),
        items=items,
        items_mapping=ItemMapping.parse("item_id=sku,title=label"),
    )
    assert error_of(spec, "items") == (
        f"{items}: required column(s) ['label'] are missing; the header has ['sku', 'name', 'body', 'cat']. "
        "Title: name the column that holds it (--items-map title=<column>) or leave it out"
    )


def test_an_items_table_without_its_id_column_says_which_flag_names_it(tmp_path):
    ratings, items = write_pair(tmp_path)
    spec = resolve_dataset(ratings, mapping=ColumnMapping.parse("timestamp="), items=items)
    assert error_of(spec, "items") == (
        f"{items}: required column(s) ['item_id'] are missing; the header has ['sku', 'name', 'body', 'cat']. "
        "Item_id: name the column that holds it, --items-map item_id=<column>"
    )


def test_a_dense_matrix_is_refused_with_how_to_reshape_it(tmp_path):
    path = tmp_path / "matrix.csv"
    header = "user," + ",".join(f"joke{j}" for j in range(12))
    path.write_text(header + "\n" + "u1," + ",".join(["99", "3.5"] * 6) + "\n")
    spec = resolve_dataset(path, "tabular")
    assert error_of(spec, "interactions") == (
        f"{path}: no item_id or user_id column among 13 columns (['user', 'joke0', 'joke1', 'joke2'] ...): this "
        "looks like a user × item matrix, and reclab reads one row per rating. Reshape it first, e.g. with "
        "pandas: df.melt(id_vars=[<the user column>], var_name='item_id', value_name='rating'), then drop the "
        "rows holding the missing-value marker; or, if it is one row per rating, name its columns with --map "
        "user_id=<column>,item_id=<column>"
    )


@pytest.mark.parametrize(
    ("cls", "text", "message"),
    [
        (ItemMapping, "sku=item_id", "--items-map: column mapping names unknown field(s) ['sku']; known: "),
        (ItemMapping, "item_id=", "--items-map: ['item_id'] cannot be declared absent: every row needs it"),
        (UserMapping, "user_id", "--users-map: column mapping 'user_id' is not of the form canonical=column"),
        (ColumnMapping, "rating=", "--map: ['rating'] cannot be declared absent: every row needs it"),
    ],
)
def test_mapping_mistakes_name_their_flag(cls, text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        cls.parse(text)


def test_the_prepare_command_takes_the_items_and_users_maps():
    from flows.cli import parser_for as cli_parser

    help_text = cli_parser("prepare").format_help()
    assert "--items-map FIELD=COLUMN,..." in help_text and "--users-map FIELD=COLUMN,..." in help_text


def test_na_values_mark_absent_cells_in_every_table(tmp_path, ingest):
    """--na-values: an item's genre cell so marked is no genre; a rating cell so marked is a missing rating,
    its row quarantined with the reason."""
    (tmp_path / "r.csv").write_text("user_id,item_id,rating\nu1,i1,5\nu1,i2,99\nu2,i1,4\n")
    (tmp_path / "m.csv").write_text("item_id,title,genres\ni1,One,(none)\ni2,Two,Drama|War\n")
    spec = resolve_dataset(
        tmp_path / "r.csv",
        mapping=ColumnMapping.parse("timestamp="),
        items=tmp_path / "m.csv",
        na_values=("99", "(none)"),
        rating_scale=(1, 5),
    )
    assert [r["genres"] for r in parse_all(spec, "items")] == [None, "Drama|War"]
    con, accounting = ingest(spec)
    assert accounting["interactions"]["kept"] == 2 and accounting["interactions"]["quarantined"] == 1
    assert con.execute("SELECT reason FROM quarantine WHERE role = 'interactions'").fetchone()[0] == "missing rating"


@pytest.mark.slow
def test_movielens_through_the_tabular_path_reads_the_same_items():
    """MovieLens latest-small's own CSVs through the tabular path (--map, --items, --items-map, --na-values)
    give every movie the title and genres the MovieLens reader gives it, and the same ratings."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-latest-small"
    if not (folder / "movies.csv").exists():
        pytest.skip("../shared/data holds MovieLens latest-small on this project's machines only")
    own = resolve_dataset(folder)
    tabular = resolve_dataset(
        folder / "ratings.csv",
        mapping=ColumnMapping.parse("user_id=userId,item_id=movieId"),
        items=folder / "movies.csv",
        items_mapping=ItemMapping.parse("item_id=movieId"),
        na_values=("(no genres listed)",),
        rating_scale=(0.5, 5),
    )
    assert (own.format, tabular.format) == ("movielens", "tabular")
    assert parse_all(tabular, "items") == parse_all(own, "items")
    assert parse_all(tabular, "interactions") == parse_all(own, "interactions")


def test_a_repeated_item_id_follows_the_duplicate_policy(tmp_path, ingest):
    """Two rows for one item: the later line wins under the default policy, and the count says so."""
    ratings, items = write_pair(tmp_path)
    items.write_text("item_id,title\ni1,Old title\ni2,Blue Pen\ni1,New title\n")
    con, accounting = ingest(resolve_dataset(ratings, mapping=ColumnMapping.parse("timestamp="), items=items))
    assert accounting["items"]["kept"] == 2 and accounting["items"]["superseded"] == 1
    assert con.execute("SELECT title FROM items WHERE item_id = 'i1'").fetchone()[0] == "New title"
