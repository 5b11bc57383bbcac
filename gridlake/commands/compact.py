"""`gridlake compact`: rewrite the small files of recent partitions into a few large ones.

Example:
    $ gridlake compact --lake lake                  # the partitions of the last 7 days
    $ gridlake compact --lake lake --since 2026-11-01
"""

from __future__ import annotations

import argparse

from gridlake.commands._args import add_lake_argument, date_arg, positive_int

DEFAULT_DAYS = 7


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compact", help="compact the small files streams leave in recent partitions",
        description="Run Delta's OPTIMIZE (no data change) over the recent date partitions of "
                    "bronze, quarantine, silver and the decision log; safe beside a running "
                    "stream (conflicts are retried).")
    add_lake_argument(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--since", type=date_arg, metavar="DATE",
                      help="compact partitions dated DATE (YYYY-MM-DD) or later")
    when.add_argument("--days", type=positive_int, default=DEFAULT_DAYS, metavar="N",
                      help="compact the partitions of the last N UTC days (default %(default)s)")
    when.add_argument("--all", action="store_true", help="compact every partition")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch.compaction import compact, recent
    from gridlake.lake import open_lake
    from gridlake.session import spark_session

    since = None if args.all else args.since or recent(args.days)
    spark = spark_session(app_name="gridlake-compact")
    lake = open_lake(args.lake, spark=spark)
    for table in compact(spark, lake, since):
        print(table.line())
    return 0
