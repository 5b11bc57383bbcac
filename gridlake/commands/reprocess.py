"""`gridlake reprocess`: rebuild silver, quarantine and rollups of a date range from bronze.

Example:
    $ gridlake reprocess --lake lake --from 2026-11-01 --to 2026-11-02
"""

from __future__ import annotations

import argparse

from gridlake.commands._args import add_lake_argument, date_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reprocess", help="re-validate a range of event dates from bronze with today's rules",
        description="Decide again, with the current contract, every bronze record whose reading "
                    "falls on the given UTC dates: replace those dates in silver, update "
                    "quarantine (entries are marked, never deleted) and recompute the rollups. "
                    "Earlier table versions stay reachable by time travel.")
    add_lake_argument(parser)
    parser.add_argument("--from", dest="start", type=date_arg, required=True, metavar="DATE",
                        help="first event date (UTC, YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", type=date_arg, required=True, metavar="DATE",
                        help="last event date, included (UTC, YYYY-MM-DD)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch.reprocess import reprocess
    from batch.rollups import check_range
    from gridlake.errors import BadArgumentError
    from gridlake.lake import ensure_tables, open_lake
    from gridlake.session import spark_session

    check_range(args.start, args.end)  # an empty range fails here, before Spark starts
    spark = spark_session(app_name="gridlake-reprocess")
    lake = open_lake(args.lake, spark=spark)
    ensure_tables(spark, lake)
    result = reprocess(spark, lake, args.start, args.end)
    if not result.records:
        raise BadArgumentError(result.nothing_sentence())
    for line in result.lines():
        print(line)
    return 0
