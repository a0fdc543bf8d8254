"""Serve the workspace's champion recommender over HTTP.

    python -m serve                                     # the default dataset's workspace, port 8000
    python -m serve --workspace workspace/movielens-latest-small --port 8080
    python -m serve --help

Then: curl 'http://127.0.0.1:8000/recommend?user_id=A2EZWZ8MBEDOLN&k=5', curl http://127.0.0.1:8000/model,
and the interactive API docs at http://127.0.0.1:8000/docs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """``python -m serve``'s parser."""
    from models.serving import RETENTION_DAYS
    from tasks.store import DEFAULT_WORKSPACE

    parser = argparse.ArgumentParser(
        prog="python -m serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=DEFAULT_WORKSPACE,
        help="workspace whose registry champion is served (default: the default dataset's)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between checks for a new champion (default 2)")
    parser.add_argument(
        "--no-log",
        action="store_true",
        help="do not log answered requests (default: logged to <workspace>/serving.duckdb)",
    )
    parser.add_argument(
        "--retention-days",
        type=int,
        default=RETENTION_DAYS,
        help="days the serving log keeps a request; older ones are removed at start-up and by the prune flow "
        "(default 90)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default warning; the startup line is printed at every level)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from models.serving.published import read_champion, registry_dir

    registry = registry_dir(args.workspace)
    if read_champion(registry) is None:
        print(
            f"error: no champion model in {registry}; run `python -m flows.full` (it publishes one) or pass "
            "--workspace",
            file=sys.stderr,
        )
        return 2
    import uvicorn

    from serve.app import create_app
    from tasks.serving_log import SERVING_DB

    log_db = None if args.no_log else args.workspace / SERVING_DB
    champion = read_champion(registry)
    print(
        f"reclab serve: model {champion['version']} of {args.workspace.name} at http://{args.host}:{args.port} "
        f"(docs: http://{args.host}:{args.port}/docs; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    from tasks.store import Workspace

    # the workspace's key for user pseudonyms (made when a model was first published with them)
    app = create_app(registry, args.poll, log_db, args.retention_days, Workspace(args.workspace).user_key(create=False))
    # no access log: its request lines would carry raw user ids (the serving log keeps pseudonyms instead)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
