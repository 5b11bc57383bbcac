"""`gridlake rollup`: recompute daily rollups for a UTC date range, or for the changed days.

Example:
    $ gridlake rollup --lake lake --from 2026-11-01 --to 2026-11-03
    $ gridlake rollup --lake lake --changed
"""

from __future__ import annotations

import argparse

from gridlake.commands._args import add_lake_argument, date_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollup", help="recompute daily device and site rollups",
        description="Recompute gold/daily_device_rollups for UTC days (and "
                    "gold/daily_site_rollups for the local days they overlap), either a date "
                    "range or exactly the days whose silver readings changed since the last "
                    "--changed run.")
    add_lake_argument(parser)
    parser.add_argument("--from", dest="start", type=date_arg, metavar="DATE",
                        help="first UTC day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", type=date_arg, metavar="DATE",
                        help="last UTC day, included (YYYY-MM-DD)")
    parser.add_argument("--changed", action="store_true",
                        help="recompute the days changed since the last --changed run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch.rollups import check_range, require_data, rollup_changed, rollup_range
    from gridlake.errors import BadArgumentError
    from gridlake.lake import ensure_tables, open_lake
    from gridlake.session import spark_session

    if args.changed and (args.start or args.end):
        raise BadArgumentError("give either --changed or --from and --to, not both")
    if not args.changed:
        if args.start is None or args.end is None:
            raise BadArgumentError("give --from DATE and --to DATE, or --changed")
        check_range(args.start, args.end)  # an empty range fails here, before Spark starts
    spark = spark_session(app_name="gridlake-rollup")
    lake = open_lake(args.lake, spark=spark)
    ensure_tables(spark, lake)
    if args.changed:
        result = rollup_changed(spark, lake)
    else:
        start, end = require_data(lake.root, args.start, args.end)
        result = rollup_range(spark, lake, start, end)
    print(result.line())
    return 0
