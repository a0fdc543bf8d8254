"""One code-defined GX expectation suite per canonical table.

Suites check the tables ingest wrote (pandas DataFrames read from DuckDB: GX's SQL data source does not
work against DuckDB). Type checks ask for ``str``, which matches pandas 3's string dtype and object
columns holding Python strings alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import great_expectations as gx
import great_expectations.expectations as gxe

from readers.fields import MIN_TIMESTAMP
from readers.schema import INTERACTIONS, ITEMS, TAGS, USERS


@dataclass(frozen=True)
class TableFacts:
    """What a table must look like, known before looking at it."""

    expected_rows: int | None  # from the ingest accounting (raw - quarantined - collapsed)
    rating_scale: tuple[float, float] = (1.0, 5.0)
    max_timestamp: int | None = None  # ingest time + 1 day
    has_timestamps: bool = True
    known_items: list[str] | None = None  # item ids of the metadata file, when there is one
    min_item_coverage: float = 1.0


def _not_null(*columns: str) -> list:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _strings(*columns: str) -> list:
    return [gxe.ExpectColumnValuesToBeOfType(column=c, type_="str") for c in columns]


def _row_count(facts: TableFacts) -> list:
    return [] if facts.expected_rows is None else [gxe.ExpectTableRowCountToEqual(value=facts.expected_rows)]


def interactions_suite(facts: TableFacts) -> gx.ExpectationSuite:
    lo, hi = facts.rating_scale
    expectations = [
        *_not_null("user_id", "item_id", "rating"),
        gxe.ExpectColumnValuesToBeBetween(column="rating", min_value=lo, max_value=hi),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id"]),
        *_strings("user_id", "item_id", "review_text", "summary"),
        *_row_count(facts),
    ]
    if facts.has_timestamps:
        expectations += [
            *_not_null("timestamp"),
            gxe.ExpectColumnValuesToBeBetween(
                column="timestamp", min_value=MIN_TIMESTAMP, max_value=facts.max_timestamp
            ),
        ]
    if facts.known_items is not None:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="item_id", value_set=facts.known_items, mostly=facts.min_item_coverage
            )
        )
    return gx.ExpectationSuite(name=INTERACTIONS, expectations=expectations)


def items_suite(facts: TableFacts) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=ITEMS,
        expectations=[
            *_not_null("item_id"),
            gxe.ExpectColumnValuesToBeUnique(column="item_id"),
            *_strings("item_id", "title", "description", "brand", "category", "genres"),
            *_row_count(facts),
        ],
    )


def users_suite(facts: TableFacts) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=USERS,
        expectations=[
            *_not_null("user_id"),
            gxe.ExpectColumnValuesToBeUnique(column="user_id"),
            *_strings("user_id", "gender", "occupation", "zip_code"),
            gxe.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=120),
            *_row_count(facts),
        ],
    )


def tags_suite(facts: TableFacts) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=TAGS,
        expectations=[
            *_not_null("user_id", "item_id", "tag", "timestamp"),
            *_strings("user_id", "item_id", "tag"),
            gxe.ExpectColumnValuesToBeBetween(
                column="timestamp", min_value=MIN_TIMESTAMP, max_value=facts.max_timestamp
            ),
            *_row_count(facts),
        ],
    )


SUITES = {INTERACTIONS: interactions_suite, ITEMS: items_suite, USERS: users_suite, TAGS: tags_suite}
