"""`gridlake forget`: erase one device from every table of the lake (GDPR), with a certificate.

Example:
    $ gridlake forget --lake lake --device D00042          # vacuum when retention allows
    $ gridlake forget --lake lake --device D00042 --now    # vacuum at once (no time travel back)
"""

from __future__ import annotations

import argparse
import sys

from gridlake.commands._args import add_lake_argument

NOW_WARNING = (
    "warning: --now vacuums with zero retention: every earlier version of the lake's tables "
    "stops being readable by time travel, the change feed before this erasure is gone, and a "
    "reader or stream running right now may fail on files removed under it")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forget", help="erase one device from every table (GDPR) and certify it",
        description="Delete every row that holds the device (bronze raw payloads, quarantine, "
                    "silver and its change data, gold, the decision log, bookkeeping), "
                    "recompute the rollups it was part of, purge deletion vectors and vacuum, "
                    "then write a deletion certificate to _gridlake/erasures and print it.")
    add_lake_argument(parser)
    parser.add_argument("--device", required=True, metavar="ID",
                        help="the device id to erase (taken as a value, never as SQL)")
    parser.add_argument("--now", action="store_true",
                        help="vacuum with zero retention now, instead of when the table's "
                             "retention period allows (loses time travel; see the warning)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch.erasure import check_device_id, forget
    from gridlake.lake import ensure_tables, open_lake
    from gridlake.session import spark_session

    device = check_device_id(args.device)
    if args.now:
        print(NOW_WARNING, file=sys.stderr)
    spark = spark_session(app_name="gridlake-forget")
    lake = open_lake(args.lake, spark=spark)
    ensure_tables(spark, lake)
    certificate = forget(spark, lake, device, now=args.now)
    print("\n".join(certificate.lines()))
    print(certificate.to_json())
    return 0
