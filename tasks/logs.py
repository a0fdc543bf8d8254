"""Log records of reclab's pure code (``models/``: the ``reclab`` logger and its children, e.g. the LM
trainer's progress lines on ``reclab.lm``) forwarded to the Prefect run's logger while a task runs."""

from __future__ import annotations

import contextlib
import logging
import threading


class _ToRunLogger(logging.Handler):
    """Sends the records logged by the thread that installed it (a task run's: the threads runner runs
    several at once) to that run's logger."""

    def __init__(self, run_logger):
        super().__init__()
        self.run_logger = run_logger
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.run_logger.log(record.levelno, record.getMessage())


_LOCK = threading.Lock()
_ACTIVE: dict[str, tuple[int, int, bool]] = {}  # logger name -> (runs forwarding it, its level, propagate)


@contextlib.contextmanager
def forward_to_run_logger(name: str = "reclab"):
    """Inside a flow or task run: records of logger ``name`` (INFO and above) logged by this thread go to the
    run's log. Runs at once on several threads each get their own records; the logger's level and
    propagation are set while any run forwards it and restored after the last."""
    from prefect import get_run_logger

    source = logging.getLogger(name)
    handler = _ToRunLogger(get_run_logger())
    with _LOCK:
        count, level, propagate = _ACTIVE.get(name, (0, source.level, source.propagate))
        _ACTIVE[name] = (count + 1, level, propagate)
        source.addHandler(handler)
        source.setLevel(logging.INFO)
        source.propagate = False  # the run logger prints it already: not a second time through the root's handlers
    try:
        yield
    finally:
        with _LOCK:
            source.removeHandler(handler)
            count, level, propagate = _ACTIVE.pop(name)
            if count > 1:
                _ACTIVE[name] = (count - 1, level, propagate)
            else:
                source.setLevel(level)
                source.propagate = propagate
