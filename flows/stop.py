"""Stopping is safe and prompt: SIGTERM (a timeout, a Prefect cancellation) or SIGINT (Ctrl-C) ends a run
within seconds, its workspace and fit store intact, and a rerun of the same command resumes from the fits
already made.

Prefect's own handler turns SIGTERM into an exception in the flow's thread and then waits for the running
task to end, which for a model's fit can be many minutes; its temporary server may be gone meanwhile, and the
run then retries events against it. Instead, each flow calls :func:`stop_promptly` first thing (Prefect
installs its handler around every flow and sub-flow, so the call is in each one's body): on the signal, every
process this one started (the LM's trainer, Dask workers, Prefect's temporary server) gets SIGTERM, SIGKILL
after ``GRACE_S``, and this process exits at once with 128 + the signal's number.

Why that is safe: every write a rerun builds on is whole or absent. The fit store writes each fit to a
temporary folder and renames it into place (``models.experiment.FitStore.keep``), DuckDB commits each stage's
rows in one transaction and recovers an interrupted one from its write-ahead log on the next open, and the
workspace lock is the operating system's (``flock``), released with the process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

GRACE_S = 3.0  # seconds the started processes get between SIGTERM and SIGKILL


def stop_promptly() -> None:
    """Install the prompt stop for SIGTERM and SIGINT (from the main thread; elsewhere: nothing to do)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stop)


def _stop(number: int, _frame) -> None:
    name = signal.Signals(number).name
    sys.stderr.write(
        f"\n{name} received: stopping now. The fits already made are kept in the workspace's fit store; "
        "rerun the same command to resume from them.\n"
    )
    sys.stderr.flush()
    stop_children()
    os._exit(128 + number)


def stop_children(grace_s: float = GRACE_S) -> int:
    """SIGTERM to every process this one started (recursively), SIGKILL to those alive after ``grace_s``.
    Returns how many there were."""
    try:
        import psutil
    except ImportError:  # psutil comes with prefect-dask's distributed; without it no child is known
        return 0
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    return len(children)
