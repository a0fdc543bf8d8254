"""The two ways input goes wrong: a whole file or path that cannot work (:class:`InputError`, the run stops with
a message naming the culprit) and one record that cannot become a row (:class:`Reject`, the record is
quarantined with the reason)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (a path, a format, a file's layout), with a message that names the culprit."""


class Reject(Exception):
    """A record that cannot become a canonical row; ``column`` names the field at fault, if one is."""

    def __init__(self, reason: str, column: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.column = column


class MissingColumns(InputError):
    """A table lacks a column its format or mapping requires (the message names them and the header)."""
