"""Canonical record layouts: the columns (and DuckDB types) every reader produces, per role.

A *role* is what a source file contributes to a dataset: its interactions (ratings and reviews), item
metadata, user attributes, or free-text tags. Every reader turns one input record into one dict whose keys
are exactly the columns of its role, or rejects it with a reason.
"""

INTERACTIONS = "interactions"
ITEMS = "items"
USERS = "users"
TAGS = "tags"
ROLES = (INTERACTIONS, ITEMS, USERS, TAGS)

# Column name -> DuckDB type. Timestamps are Unix seconds (UTC); ids are always text.
COLUMNS: dict[str, dict[str, str]] = {
    INTERACTIONS: {
        "user_id": "VARCHAR",
        "item_id": "VARCHAR",
        "rating": "DOUBLE",
        "timestamp": "BIGINT",
        "review_text": "VARCHAR",
        "summary": "VARCHAR",
    },
    ITEMS: {
        "item_id": "VARCHAR",
        "title": "VARCHAR",
        "description": "VARCHAR",
        "brand": "VARCHAR",
        "category": "VARCHAR",  # '|'-joined categories, outermost first
        "genres": "VARCHAR",  # '|'-joined genres
        "price": "DOUBLE",
    },
    USERS: {
        "user_id": "VARCHAR",
        "age": "INTEGER",
        "gender": "VARCHAR",
        "occupation": "VARCHAR",
        "zip_code": "VARCHAR",
    },
    TAGS: {
        "user_id": "VARCHAR",
        "item_id": "VARCHAR",
        "tag": "VARCHAR",
        "timestamp": "BIGINT",
    },
}

# The columns that identify one row of a role once duplicates are resolved.
KEYS: dict[str, tuple[str, ...]] = {
    INTERACTIONS: ("user_id", "item_id"),
    ITEMS: ("item_id",),
    USERS: ("user_id",),
    TAGS: ("user_id", "item_id", "tag", "timestamp"),
}

# Which column orders repeated keys when the policy keeps the latest (None: later lines win).
ORDER_BY: dict[str, str | None] = {INTERACTIONS: "timestamp", ITEMS: None, USERS: None, TAGS: None}
