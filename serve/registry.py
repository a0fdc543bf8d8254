"""What the service serves: list a workspace's published models, promote one to champion, roll back, run an
A/B test and compare its arms.

    python -m serve.registry list
    python -m serve.registry promote 20261128-140512-1f2e3d4c --reason "manual: A/B winner"
    python -m serve.registry rollback
    python -m serve.registry ab 20261128-150102-9a8b7c6d --share 0.1   # A/B: 10% of users get this version
    python -m serve.registry ab-report                                 # compare the arms in the serving log
    python -m serve.registry ab --off
    python -m serve.registry forget A2EFCYXHNK06IS                     # erase a user's data on request
    python -m serve.registry --help

``python -m serve`` follows the champion: a promotion or rollback is served within its poll interval,
without a restart. Every change is a row in the ``promotions`` table, with its reason. ``forget`` erases a
user's rows from every table, the serving log and the working folders, and marks the published bundles trained
on them (``tasks/erasure.py``); retrain and publish to serve without them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tasks.store import DEFAULT_WORKSPACE


def build_parser() -> argparse.ArgumentParser:
    """``python -m serve.registry``'s parser, its sub-commands sharing ``--workspace``."""
    parser = argparse.ArgumentParser(
        prog="python -m serve.registry", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace", type=Path, default=DEFAULT_WORKSPACE, help="workspace folder (default: the default dataset's)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="published models, the champion marked with *")
    promote = commands.add_parser("promote", parents=[common], help="make a published version the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", default="manual promotion", help="recorded in promotions (default: %(default)s)")
    rollback = commands.add_parser("rollback", parents=[common], help="make the previous champion the champion again")
    rollback.add_argument("--reason", default="manual rollback", help="recorded in promotions (default: %(default)s)")
    ab = commands.add_parser("ab", parents=[common], help="start, change or stop (--off) an A/B test")
    ab.add_argument("version", nargs="?", help="the challenger: a published version")
    ab.add_argument("--share", type=float, default=0.1, help="share of users (stable hash) it answers (default 0.1)")
    ab.add_argument("--off", action="store_true", help="stop the A/B test: everyone gets the champion")
    commands.add_parser(
        "ab-report",
        parents=[common],
        help="compare the A/B arms in the serving log: later-interaction hit rate, latency",
    )
    forget = commands.add_parser(
        "forget",
        parents=[common],
        help="erase a user's data (every table, raw included; the serving log; marks bundles trained on them)",
    )
    forget.add_argument("user_id", help="the user's id as in the dataset")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from flows.cli import run_cli
    from models.serving.published import erasure_marks, read_champion, registry_dir
    from readers import InputError
    from tasks.registry import list_models, rollback_target, set_ab, set_champion
    from tasks.serving_log import ab_report
    from tasks.store import Workspace, connect

    def body() -> None:
        workspace = Workspace.existing(args.workspace)
        registry = registry_dir(workspace.root)
        if args.command == "ab":
            if not args.off and not args.version:
                raise InputError("name the challenger version, or pass --off to stop the A/B test")
            pointer = set_ab(registry, None if args.off else args.version, args.share)
            print(
                "A/B test stopped"
                if pointer is None
                else f"A/B test: {pointer['share']:.0%} of users get {pointer['challenger']}"
            )
            return
        if args.command == "ab-report":
            print_ab(ab_report(workspace.root))
            return
        if args.command == "forget":
            from reports.console import print_erasure
            from tasks.erasure import forget_user

            start = time.perf_counter()
            print_erasure(forget_user(workspace, args.user_id))
            print(f"done in {time.perf_counter() - start:.1f} s")
            return
        with connect(workspace.db) as con:
            if args.command == "list":
                champion = (read_champion(registry) or {}).get("version")
                for row in list_models(con).itertuples():
                    mark = "*" if row.version == champion else " "
                    metrics = json.loads(row.metrics or "{}")
                    shown = "  ".join(
                        f"{name} {value:.4f}"
                        for name, value in metrics.items()
                        if name in ("rmse", "mae") or name.startswith(("ndcg@", "recall@"))
                    )
                    erased = len(erasure_marks(registry / row.version))  # trained on users erased since
                    note = f"  (trained on {erased} erased user(s))" if erased else ""
                    print(f"{mark} {row.version}  run {row.run_id[:8]}  {row.split_id:<16} {shown}{note}")
                return
            version = args.version if args.command == "promote" else rollback_target(con, registry)
            pointer = set_champion(con, registry, version, args.command, args.reason)
        print(f"champion: {pointer['version']} ({pointer['path']})")

    return run_cli(body=body)


def print_ab(report: dict) -> None:
    period = report.get("period") or {}
    if period.get("first_request"):
        print(
            f"requests from {period['first_request']} to {period['last_request']} (the log keeps its retention period)\n"
        )
    print(f"{'arm':<12}{'versions':<28}{'requests':>9}{'users':>7}{'hit rate':>10}{'p50 ms':>8}{'p99 ms':>8}")
    for arm, a in report["arms"].items():
        print(
            f"{arm:<12}{','.join(a['versions']):<28}{a['requests']:>9}{a['users']:>7}{a['hit_rate']:>10.4f}"
            f"{a['latency_p50_ms']:>8.2f}{a['latency_p99_ms']:>8.2f}"
        )
    test = report.get("challenger_vs_champion")
    if test:
        print(
            f"\nchallenger - champion hit rate per user: {test['mean_diff']:+.4f} (Welch p = {test['welch_p']:.3g}, "
            f"Mann-Whitney p = {test['mannwhitney_p']:.3g}; {test['n_a']} vs {test['n_b']} users)"
        )
    print("\nA hit: the user interacted with a served item after it was served (interactions ingested since).")


if __name__ == "__main__":
    sys.exit(main())
