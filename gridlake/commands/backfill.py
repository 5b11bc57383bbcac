"""`gridlake backfill`: load late-report files through the write path, recompute touched days.

Example:
    $ gridlake backfill --lake lake fleet/late --sites fleet/sites.csv
    files: 7 found, 7 loaded, 0 already loaded (skipped)
    records: 2016 read, 1990 upserted, 12 duplicate/stale, 14 quarantined
    rollups: 2 UTC day(s) (2026-11-01..2026-11-02), 3 site-local day(s) recomputed ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gridlake.commands._args import add_lake_argument, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backfill", help="load late-report files and recompute the days they touched",
        description="Load late reports (.jsonl, .jsonl.gz, or .json CloudEvents batches) "
                    "through the same write path as the stream. A file already loaded (same "
                    "content) is skipped. Afterwards the rollups of every day whose readings "
                    "changed are recomputed.")
    add_lake_argument(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="late-report files, or folders of them (not recursive)")
    parser.add_argument("--sites", type=Path, metavar="FILE",
                        help="load this site registry (sites.csv) into reference/sites first")
    parser.add_argument("--files-per-batch", type=positive_int, default=32, metavar="N",
                        help="at most N new files written together as one batch (default 32; "
                             "a batch also ends before its files pass 128 MiB as stored)")
    parser.add_argument("--no-rollup", action="store_true",
                        help="load only; leave the rollups to `gridlake rollup --changed`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch.late_reports import SUFFIXES, backfill, find_report_files, passed_over_sentence
    from batch.sites import load_sites
    from gridlake.errors import BadArgumentError
    from gridlake.lake import open_lake
    from gridlake.landing import few
    from gridlake.session import spark_session

    # A bad path, or nothing to load, fails here, before Spark starts.
    reports, others = find_report_files(args.paths)
    if not reports:
        raise BadArgumentError(
            f"no late reports ({', '.join(suffix for suffix, _ in SUFFIXES)} files) in "
            f"{', '.join(repr(str(p)) for p in args.paths)}"
            + (f", only {few(others)}" if others else "") + "; nothing to load")
    if args.sites is not None and not args.sites.is_file():
        raise BadArgumentError(f"site registry {str(args.sites)!r} does not exist or is not a file")
    spark = spark_session(app_name="gridlake-backfill")
    lake = open_lake(args.lake, create=True, spark=spark)
    if args.sites is not None:
        print(f"sites: {load_sites(spark, lake, args.sites)} loaded from {args.sites}")
    result = backfill(spark, lake, args.paths, files_per_batch=args.files_per_batch,
                      rollup=not args.no_rollup)
    for line in result.lines():
        print(line)
    if result.passed_over:
        print(f"gridlake backfill: {passed_over_sentence(result.passed_over)}", file=sys.stderr)
    for problem in result.damaged:
        print(f"gridlake backfill: {problem}", file=sys.stderr)
    for problem in result.unreadable:
        print(f"gridlake backfill: could not read {problem}", file=sys.stderr)
    return 1 if result.unreadable else 0
