"""`gridlake quality`: run the Great Expectations suites on the lake's tables.

Prints a pass/fail table per table, stores every result in `_gridlake/quality_results`,
builds the Data Docs site under `_gridlake/data_docs/`, and exits 1 naming the expectation and
the offending values when a fail-level expectation failed.

Example:
    $ gridlake quality --lake lake
    $ gridlake quality --lake lake --table gold/daily_device_rollups --day 2026-11-01
"""

from __future__ import annotations

import argparse

from gridlake.commands._args import add_lake_argument, date_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quality", help="run the data-quality suites (Great Expectations) on the lake",
        description="Validate silver, quarantine and gold with the expectation suites derived "
                    "from shared_schemas; store the results in _gridlake/quality_results and "
                    "build Data Docs in _gridlake/data_docs/. Exits 1 when a fail-level "
                    "expectation failed.")
    add_lake_argument(parser)
    parser.add_argument("--table", action="append", metavar="T",
                        help="check only this table (repeatable), e.g. gold/daily_device_rollups "
                             "or daily_device_rollups; default: all")
    parser.add_argument("--day", type=date_arg, metavar="DATE",
                        help="check only this day of each table's partition column (YYYY-MM-DD)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridlake.lake import ensure_tables, open_lake
    from gridlake.quality import check_lake, raise_on_fail, suite_spec
    from gridlake.session import spark_session

    for table in args.table or ():
        suite_spec(table)  # an unknown table fails here, before Spark starts
    spark = spark_session(app_name="gridlake-quality")
    lake = open_lake(args.lake, spark=spark)
    ensure_tables(spark, lake)
    report = check_lake(spark, lake, tables=args.table, day=args.day)
    print(report.table_text())
    print(f"\nquality run {report.run_id}: {len(report.outcomes) - len(report.failed)}/"
          f"{len(report.outcomes)} expectations passed; results in _gridlake/quality_results"
          + (f"; Data Docs: {report.docs_index}" if report.docs_index else ""))
    raise_on_fail(report)
    return 0
