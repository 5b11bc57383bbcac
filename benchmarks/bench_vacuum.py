"""`make bench-vacuum`: VACUUM's listing parallelism, Delta's default against gridlake's.

Delta's VACUUM lists a table's folders in one Spark job of
`spark.sql.sources.parallelPartitionDiscovery.parallelism` tasks: 10,000 unless set, one per
core in gridlake's local session. `forget` vacuums every table it touched, so this sets its cost
on a small lake. In one driver, on the same lake:

- **vacuum**: `VACUUM` (default retention) of bronze, quarantine, silver and the daily device
  rollups, alternating the two settings table by table, `repeats` times;
- **forget**: the lake copied twice, and `forget` of the same device in each copy, one copy per
  setting (the default's copy first in the first round, then in every other), `rounds`
  devices in turn.

Results: `benchmarks/results/vacuum.json` and `.md`.

Example:
    $ make bench-vacuum
    $ .venv/bin/python -m benchmarks.bench_vacuum --devices 6 --repeats 1 --rounds 1 \\
          --out /tmp/bench                                                  # a smoke run
"""

from __future__ import annotations

import csv
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from benchmarks.bench_stream import (
    bench_session,
    cached_fleet,
    finish,
    int_options,
    new_results,
    run_sentence,
    say,
)

LISTING = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
DELTA_DEFAULT = "10000"
T = TypeVar("T")


@dataclass(frozen=True)
class VacuumOptions:
    devices: int = 12
    days: int = 3
    repeats: int = 2
    rounds: int = 1
    seed: int = 7


def settings(spark) -> dict[str, str]:
    """The two listing parallelisms compared: Delta's default and what gridlake's session set
    (`gridlake.session`); read before any run changes it."""
    return {"default": DELTA_DEFAULT, "gridlake": spark.conf.get(LISTING)}


def build_lake(spark, fleet: Path, root: Path):
    """The fleet streamed (one micro-batch per file), its late reports backfilled, rollups
    computed: every table forget can touch holds rows."""
    from batch.late_reports import backfill
    from batch.sites import load_sites
    from gridlake.ingest import WriteContext, record_batch, write_batch
    from gridlake.lake import open_lake
    from streaming.sources import read_files

    lake = open_lake(str(root), create=True, spark=spark)
    load_sites(spark, lake, fleet / "sites.csv")
    for batch_id, path in enumerate(sorted((fleet / "stream").glob("*.jsonl"))):
        ctx = WriteContext.now("bench-vacuum", batch_id, "stream", "bench")
        record_batch(spark, lake, write_batch(spark, lake, read_files(spark, [str(path)]), ctx),
                     ctx)
    backfill(spark, lake, [fleet / "late"], progress=False)
    return lake


def timed(spark, setting: str, action: Callable[[], T]) -> tuple[float, T]:
    """`action()` with the listing parallelism at `setting`: (seconds, its result)."""
    spark.conf.set(LISTING, setting)
    t0 = time.monotonic()
    result = action()
    return time.monotonic() - t0, result


def run_vacuums(spark, lake, compared: dict[str, str], repeats: int
                ) -> dict[str, list[dict]]:
    """Per setting: {table, seconds} of every VACUUM."""
    from delta.tables import DeltaTable

    from shared_schemas.tables import (
        bronze_telemetry,
        gold_daily_device_rollups,
        quarantine_telemetry,
        silver_readings,
    )

    out: dict[str, list[dict]] = {name: [] for name in compared}
    tables = [spec().path for spec in (bronze_telemetry, quarantine_telemetry, silver_readings,
                                       gold_daily_device_rollups)]
    order = list(compared.items())
    for repeat in range(repeats):
        for i, table in enumerate(tables):
            for name, setting in reversed(order) if (repeat + i) % 2 else order:
                seconds, _ = timed(spark, setting,
                                   DeltaTable.forPath(spark, lake.path(table)).vacuum)
                out[name].append({"table": table, "seconds": seconds})
        say(f"vacuum round {repeat + 1}: " + ", ".join(
            f"{name} {sum(r['seconds'] for r in runs[-len(tables):]):.1f} s over "
            f"{len(tables)} tables" for name, runs in out.items()))
    return out


def run_forgets(spark, lake, compared: dict[str, str], work: Path, devices: list[str]
                ) -> dict[str, list[dict]]:
    from batch.erasure import forget
    from gridlake.lake import Lake

    out: dict[str, list[dict]] = {name: [] for name in compared}
    copies = {}
    for name in compared:
        copies[name] = work / f"lake-{name}"
        shutil.copytree(lake.root, copies[name])
    order = list(compared.items())
    for round_number, device in enumerate(devices):
        for name, setting in reversed(order) if round_number % 2 else order:
            seconds, certificate = timed(spark, setting, partial(
                forget, spark, Lake(str(copies[name])), device))
            out[name].append({"device": device, "seconds": seconds,
                              "tables": sorted(p for p, t in certificate.tables.items()
                                               if t.rows_removed or t.rows_redacted),
                              "rows_removed": certificate.rows_removed})
        say(f"forget {device}: " + ", ".join(
            f"{name} {runs[-1]['seconds']:.1f} s" for name, runs in out.items()))
    return out


def summarize(results: dict) -> dict:
    m, out = results["measurements"], {}
    if "vacuum" in m and all(m["vacuum"].values()):
        out["vacuum_median"] = {k: statistics.median(r["seconds"] for r in v)
                                for k, v in m["vacuum"].items()}
        out["vacuum_ratio"] = out["vacuum_median"]["default"] / out["vacuum_median"]["gridlake"]
        out["vacuum_by_table"] = {
            table: {k: statistics.median(r["seconds"] for r in v if r["table"] == table)
                    for k, v in m["vacuum"].items()}
            for table in dict.fromkeys(r["table"] for r in m["vacuum"]["default"])}
    if "forget" in m and all(m["forget"].values()):
        out["forget_median"] = {k: statistics.median(r["seconds"] for r in v)
                                for k, v in m["forget"].items()}
        out["forget_ratio"] = out["forget_median"]["default"] / out["forget_median"]["gridlake"]
    return out


def markdown(results: dict) -> str:
    s, m, o = results["summary"], results["measurements"], results["options"]
    lines = ["# make bench-vacuum", "", run_sentence(results), "",
             f"A lake of {o['devices']} devices × {o['days']} days (streamed, late reports "
             "backfilled, rolled up), one driver; `" + LISTING + "` set to Delta's default "
             f"({DELTA_DEFAULT}) or gridlake's ({results['settings']['gridlake']}, one per core), "
             "alternating.", "",
             "| | default: median s | gridlake: median s | default / gridlake | runs |",
             "|---|---:|---:|---:|---:|"]
    if "vacuum_median" in s:
        v = s["vacuum_median"]
        lines.append(f"| VACUUM of one table (all four) | {v['default']:.1f} | "
                     f"{v['gridlake']:.1f} | {s['vacuum_ratio']:.1f}× | "
                     f"{len(m['vacuum']['default'])} each |")
        for table, t in s["vacuum_by_table"].items():
            lines.append(f"| VACUUM of `{table}` | {t['default']:.1f} | {t['gridlake']:.1f} | "
                         f"{t['default'] / t['gridlake']:.1f}× | {o['repeats']} each |")
    if "forget_median" in s:
        f = s["forget_median"]
        lines.append(f"| `forget` of one device | {f['default']:.1f} | {f['gridlake']:.1f} | "
                     f"{s['forget_ratio']:.1f}× | {len(m['forget']['default'])} each |")
    for name, runs in m.get("forget", {}).items():
        lines += ["", f"forget with {name}: " + "; ".join(
            f"{r['device']} {r['seconds']:.1f} s, {r['rows_removed']} rows removed from "
            f"{len(r['tables'])} tables" for r in runs)]
    lines += ["", "Every time: `vacuum.json`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from gridlake.generator import GenerateOptions

    options, out_dir, parser = int_options(argv, VacuumOptions(),
                                           "python -m benchmarks.bench_vacuum", __doc__, "vacuum")
    if options.repeats < 1 or not 1 <= options.rounds <= options.devices:
        parser.error(f"--repeats must be 1 or more and --rounds 1 to --devices "
                     f"({options.devices}); they are {options.repeats} and {options.rounds}")
    results = new_results(options)
    fleet = cached_fleet(GenerateOptions(devices=options.devices, days=options.days,
                                         seed=options.seed, stream_files=options.days * 4),
                         "vacuum fleet")
    spark, work = bench_session("gridlake-bench-vacuum", "vacuum")
    compared = results["settings"] = settings(spark)
    try:
        say("building the lake")
        lake = build_lake(spark, fleet, work / "lake")
        results["measurements"]["vacuum"] = run_vacuums(spark, lake, compared,
                                                        options.repeats)
        with (fleet / "devices.csv").open(encoding="utf-8") as f:
            devices = sorted(row["device_id"] for row in csv.DictReader(f))
        results["measurements"]["forget"] = run_forgets(spark, lake, compared, work,
                                                        devices[:options.rounds])
    finally:
        finish(results, out_dir, "vacuum", summarize, markdown, work, spark)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
