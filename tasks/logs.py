"""Log records of reclab's pure code (``models/``: the ``reclab`` logger and its children, e.g. the LM
trainer's progress lines on ``reclab.lm``) forwarded to the Prefect run's logger while a task runs."""

from __future__ import annotations

import contextlib
import logging


class _ToRunLogger(logging.Handler):
    def __init__(self, run_logger):
        super().__init__()
        self.run_logger = run_logger

    def emit(self, record: logging.LogRecord) -> None:
        self.run_logger.log(record.levelno, record.getMessage())


@contextlib.contextmanager
def forward_to_run_logger(name: str = "reclab"):
    """Inside a flow or task run: records of logger ``name`` (INFO and above) go to the run's log."""
    from prefect import get_run_logger

    source = logging.getLogger(name)
    handler = _ToRunLogger(get_run_logger())
    level, propagate = source.level, source.propagate
    source.addHandler(handler)
    source.setLevel(logging.INFO)
    source.propagate = False  # the run logger prints it already: not a second time through the root's handlers
    try:
        yield
    finally:
        source.removeHandler(handler)
        source.setLevel(level)
        source.propagate = propagate
