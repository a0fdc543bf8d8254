"""The model registry of a workspace: list published models, promote one to champion, roll back.

    python -m flows.registry list
    python -m flows.registry promote 20261128-140512-1f2e3d4c --reason "manual: A/B winner"
    python -m flows.registry rollback
    python -m flows.registry --help

``python -m serve`` follows the champion: a promotion or rollback is served within its poll interval,
without a restart. Every change is a row in the ``promotions`` table, with its reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks.store import DEFAULT_WORKSPACES


def main(argv: list[str] | None = None) -> int:
    from flows.cli import run_cli
    from tasks.registry import list_models, read_champion, registry_dir, rollback_target, set_champion
    from tasks.store import Workspace, connect

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACES / "amazon-musical-instruments-5core",
                        help="workspace folder (default: the default dataset's)")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="published models, the champion marked with *")
    promote = commands.add_parser("promote", parents=[common], help="make a published version the champion")
    promote.add_argument("version")
    promote.add_argument("--reason", default="manual promotion")
    rollback = commands.add_parser("rollback", parents=[common], help="make the previous champion the champion again")
    rollback.add_argument("--reason", default="manual rollback")
    args = parser.parse_args(argv)

    def body() -> None:
        workspace = Workspace.existing(args.workspace)
        registry = registry_dir(workspace.root)
        with connect(workspace.db) as con:
            if args.command == "list":
                champion = (read_champion(registry) or {}).get("version")
                for row in list_models(con).itertuples():
                    mark = "*" if row.version == champion else " "
                    print(f"{mark} {row.version}  run {row.run_id[:8]}  {row.split_id:<16} {row.metrics}")
                return
            version = args.version if args.command == "promote" else rollback_target(con, registry)
            pointer = set_champion(con, registry, version, args.command, args.reason)
        print(f"champion: {pointer['version']} ({pointer['path']})")

    return run_cli(body=body)


if __name__ == "__main__":
    sys.exit(main())
