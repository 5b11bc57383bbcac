"""The `gridlake` command line: one subcommand per module in `gridlake.commands`.

Every command is thin wiring: parse arguments, call the library, print. Errors that a person
can fix are `GridlakeError`s and become one sentence on stderr and exit status 1; so do a file
the operating system refuses (`OSError`: not a folder, no permission, disk full) and a date
pushed past the calendar's end by its arithmetic (`OverflowError`).

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
    except OSError as exc:
        print(f"gridlake {args.command}: {os_sentence(exc)}", file=sys.stderr)
        return 1
    except OverflowError:
        print(f"gridlake {args.command}: a date or count given is too far out for the calendar "
              f"(years 1 to 9999); give a nearer one", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gridlake {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def os_sentence(exc: OSError) -> str:
    """`OSError` as one sentence: what the system said, and of which file."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    return f"{exc.filename}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
