"""`gridlake demo`: the whole flow on the embedded default, in one command.

Generates a synthetic fleet, streams it into a lake (bronze, quarantine, silver), loads the
late reports through the batch half, recomputes the days they touched, runs the data-quality
suites and prints the fleet's daily energy. Everything lands under `demo/` (or `--dir`);
running it again is safe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gridlake.commands._args import positive_int
from gridlake.session import REPO_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="generate a fleet, stream it, backfill late reports, print daily energy",
        description="Run the whole gridlake flow on the embedded default (Spark local, Delta "
                    "on the local disk, a landing folder as the source).")
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / "demo", metavar="DIR",
                        help="where the fleet and the lake go (default: demo/ in the repo)")
    parser.add_argument("--devices", type=positive_int, default=20, metavar="N")
    parser.add_argument("--days", type=positive_int, default=2, metavar="D")
    parser.set_defaults(func=run)


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from batch.late_reports import find_report_files
    from gridlake.cli import main
    from gridlake.lake import open_lake
    from gridlake.session import spark_session
    from shared_schemas.tables import gold_daily_device_rollups

    fleet, lake_dir = args.dir / "fleet", args.dir / "lake"
    _step(f"1/6 generate a fleet of {args.devices} devices over {args.days} days")
    if main(["generate", "--out", str(fleet), "--devices", str(args.devices),
             "--days", str(args.days)]) != 0:
        return 1
    _step("2/6 stream the live files into bronze, quarantine and silver")
    if main(["stream", "--source", f"files:{fleet / 'stream'}", "--lake", str(lake_dir),
             "--available-now", "--max-files-per-trigger", "2"]) != 0:
        return 1
    _step("3/6 roll up the days the stream changed (what the Dagster schedule does)")
    if main(["sites", "--lake", str(lake_dir), "load", str(fleet / "sites.csv")]) != 0:
        return 1
    if main(["rollup", "--lake", str(lake_dir), "--changed"]) != 0:
        return 1
    _step("4/6 load the late reports and recompute the days they touched")
    if not find_report_files([fleet / "late"])[0]:
        print("(this fleet has no late reports: no device was offline long enough)")
    elif main(["backfill", "--lake", str(lake_dir), str(fleet / "late")]) != 0:
        return 1
    _step("5/6 check data quality with the Great Expectations suites")
    if main(["quality", "--lake", str(lake_dir)]) != 0:
        return 1
    _step("6/6 the fleet's daily energy (kWh) from gold/daily_device_rollups")
    spark = spark_session(app_name="gridlake-demo")
    lake = open_lake(str(lake_dir), spark=spark)
    gold = spark.read.format("delta").load(lake.path(gold_daily_device_rollups()))
    (gold.groupBy("day", "device_type")
     .agg(F.round(F.sum("energy_import_wh") / 1000, 1).alias("import_kwh"),
          F.round(F.sum("energy_export_wh") / 1000, 1).alias("export_kwh"),
          F.sum("samples").alias("readings"))
     .orderBy("day", "device_type")
     .show(100, truncate=False))
    print(f"The lake is at {lake.root}. Next: `gridlake quarantine --lake {lake.root} list`, "
          f"`make ui` for Dagster, `make notebooks` for the analyst notebooks.")
    return 0
