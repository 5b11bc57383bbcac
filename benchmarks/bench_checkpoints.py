"""`make bench-checkpoints`: Delta log checkpoints of the stream's tables, together or spread.

Each micro-batch commits to bronze, silver, the decision log and the batch log (and quarantine
when a record fails), and Delta writes a log checkpoint at every commit whose version is a
multiple of the table's `delta.checkpointInterval`. This benchmark feeds the same small
micro-batches (one landing file each, through `write_batch` and `record_batch`, as the stream's
foreachBatch does) into two lakes in one driver, alternating batch by batch so both see the
same machine:

- **together**: every one of those tables checkpoints every 10 commits (Delta's default);
- **spread**: the intervals gridlake creates them with (`shared_schemas.tables.checkpoint_every`).

Per batch: wall time. The report compares the mean (the total cost), and the slowest batches
(what sets the stream's latency tail), over the batches after the first few, and checks that
both lakes hold the same silver and quarantine rows. Results:
`benchmarks/results/checkpoints.json` and `.md`.

Example:
    $ make bench-checkpoints
    $ .venv/bin/python -m benchmarks.bench_checkpoints --devices 60 --batches 12 \\
          --out /tmp/bench                                                  # a smoke run
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_stream import (
    _landing_files,
    bench_session,
    cached_fleet,
    finish,
    int_options,
    new_results,
    run_sentence,
    say,
)

LAKES = ("together", "spread")


@dataclass(frozen=True)
class CheckpointOptions:
    devices: int = 300
    batches: int = 40
    warm_up: int = 3
    seed: int = 7


def parse_args(argv: list[str] | None) -> tuple[CheckpointOptions, Path]:
    options, out, parser = int_options(argv, CheckpointOptions(),
                                       "python -m benchmarks.bench_checkpoints", __doc__,
                                       "checkpoints")
    if options.batches <= options.warm_up + 1:
        parser.error(f"--batches must be more than --warm-up + 1 ({options.warm_up + 1})")
    return options, out


def new_lake(spark, root: Path, name: str) -> tuple[object, dict[str, str]]:
    """A new lake; "together" has every micro-batch table at Delta's default interval of 10.

    Both lakes get one ALTER per table, so their tables start from the same versions."""
    from gridlake.lake import open_lake
    from shared_schemas.tables import CHECKPOINT_INTERVAL_PROPERTY, micro_batch_tables

    lake = open_lake(str(root / name), create=True, spark=spark)
    intervals = {}
    for spec in micro_batch_tables():
        every = ("10" if name == "together"
                 else spec.table_properties.get(CHECKPOINT_INTERVAL_PROPERTY, "10"))
        # The path is the lake's own folder and `every` a number: nothing here comes from input.
        spark.sql(f"ALTER TABLE delta.`{lake.path(spec)}` SET TBLPROPERTIES "
                  f"('{CHECKPOINT_INTERVAL_PROPERTY}' = '{int(every)}')")
        intervals[spec.path] = every
    return lake, intervals


def same_rows(spark, lakes: dict) -> dict[str, list[int]]:
    """Per table: rows in each lake, and rows of each missing from the other (both 0 if equal);
    columns stamped with the clock or the lake's own run are left out."""
    from shared_schemas.tables import quarantine_telemetry, silver_readings

    stamped = ("written_at", "quarantined_at", "ingest_time", "ingest_date", "run_id")
    out = {}
    for spec in (silver_readings(), quarantine_telemetry()):
        a, b = (spark.read.format("delta").load(lakes[name].path(spec)).drop(*stamped)
                for name in LAKES)
        out[spec.path] = [a.count(), b.count(), a.exceptAll(b).count(), b.exceptAll(a).count()]
    return out


def summarize(results: dict) -> dict:
    warm = results["options"]["warm_up"]
    out = {}
    for name, run in results["measurements"].get("lakes", {}).items():
        after = run["seconds"][warm:]
        if len(after) < 2:  # a run that stopped early: its times are in the JSON as they are
            continue
        out[name] = {"mean": statistics.mean(after), "median": statistics.median(after),
                     "p90": statistics.quantiles(after, n=10, method="inclusive")[-1],
                     "max": max(after),
                     # A record that arrives as a batch starts waits for it and the next one.
                     "max_two_in_a_row": max(a + b for a, b in zip(after, after[1:],
                                                                   strict=False))}
    if len(out) == len(LAKES):
        out["spread_over_together"] = {k: out["spread"][k] / out["together"][k]
                                       for k in out["spread"]}
    return out


def markdown(results: dict) -> str:
    s, o = results["summary"], results["options"]
    lakes = results["measurements"].get("lakes", {})
    lines = [
        "# make bench-checkpoints", "",
        run_sentence(results), "",
        f"{o['batches']} micro-batches of one landing file each ({o['devices']} devices; "
        "`write_batch` + `record_batch`) into two lakes in one driver, alternating batch by "
        f"batch; statistics over the batches after the first {o['warm_up']}.", "",
        "| lake | checkpoint every (commits) | s / batch, mean | median | p90 | slowest | "
        "slowest two in a row |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in LAKES:
        if name in s:
            r, every = s[name], lakes[name]["intervals"]
            lines.append(f"| {name} | {', '.join(f'{p} {v}' for p, v in every.items())} | "
                         f"{r['mean']:.2f} | {r['median']:.2f} | {r['p90']:.2f} | "
                         f"{r['max']:.2f} | {r['max_two_in_a_row']:.2f} |")
    if "spread_over_together" in s:
        ratio = s["spread_over_together"]
        lines += ["", "spread / together: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.2f}" for k, v in ratio.items()) + "."]
    for name in LAKES:
        if name in lakes:
            lines += ["", f"{name}, seconds per batch: " + " ".join(
                f"{i}:{x:.1f}" for i, x in enumerate(lakes[name]["seconds"]))]
    if "same_rows" in results["measurements"]:
        lines += ["", "Rows (together, spread, only in together, only in spread): " + "; ".join(
            f"{t} {v}" for t, v in results["measurements"]["same_rows"].items()) + "."]
    lines += ["", "Every batch's time: `checkpoints.json`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from gridlake.generator import GenerateOptions
    from gridlake.ingest import WriteContext, record_batch, write_batch

    options, out_dir = parse_args(argv)
    results = new_results(options)
    fleet = cached_fleet(GenerateOptions(devices=options.devices, days=1, seed=options.seed,
                                         stream_files=options.batches, late_devices=0.0),
                         "checkpoint fleet")
    spark, work = bench_session("gridlake-bench-checkpoints", "checkpoints")
    runs = results["measurements"]["lakes"] = {}
    try:
        lakes = {}
        for name in LAKES:
            lakes[name], intervals = new_lake(spark, work, name)
            runs[name] = {"intervals": intervals, "seconds": []}
        for batch_id, path in enumerate(sorted((fleet / "stream").glob("*.jsonl"))):
            for name in LAKES if batch_id % 2 else reversed(LAKES):
                raw = _landing_files(spark, path)  # one file: one micro-batch
                ctx = WriteContext.now(f"bench-{name}", batch_id, "stream", "bench")
                t0 = time.monotonic()
                result = write_batch(spark, lakes[name], raw, ctx, may_be_replay=False)
                record_batch(spark, lakes[name], result, ctx)
                runs[name]["seconds"].append(time.monotonic() - t0)
            say(f"batch {batch_id}: " + ", ".join(
                f"{name} {runs[name]['seconds'][-1]:.1f} s" for name in LAKES))
        results["measurements"]["same_rows"] = same_rows(spark, lakes)
    finally:
        finish(results, out_dir, "checkpoints", summarize, markdown, work, spark)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
