"""The `gridlake` command line: one subcommand per module in `gridlake.commands`.

Every command is thin wiring: parse arguments, call the library, print. Errors that a person
can fix are `GridlakeError`s and become one sentence on stderr and exit status 1.

Example:
    $ gridlake generate --out /tmp/fleet --devices 10 --days 2
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gridlake.commands._args import missing_lake
from gridlake.errors import GridlakeError

# Order here is the order `gridlake --help` lists them.
COMMAND_MODULES = (
    "generate",
    "stream",
    "kafka_dev",
    "cluster_dev",
    "produce",
    "backfill",
    "rollup",
    "compact",
    "sites",
    "reprocess",
    "schema",
    "quality",
    "lineage",
    "quarantine",
    "forget",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridlake",
        description="A lakehouse for energy-IoT telemetry: stream, backfill, roll up, trace, erase.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"gridlake.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if missing := missing_lake(args):
        parser.error(f"{args.command}: {missing}")
    try:
        result = args.func(args)
    except GridlakeError as exc:
        print(f"gridlake {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gridlake {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
