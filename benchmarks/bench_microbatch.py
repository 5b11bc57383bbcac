"""`make bench-microbatch`: what a small micro-batch pays besides its records, side by side.

The Kafka latency target is a matter of small micro-batches: their time is mostly a fixed cost
per batch. This benchmark runs the same small batches (one landing file each, through
`write_batch` and `record_batch`, as the stream's foreachBatch does) in fresh Spark drivers,
each differing from gridlake's session in one setting, alternating them so all see the same
machine:

- **gridlake's session** (`gridlake.session`);
- **Spark's default code cache** (`spark.sql.codegen.cache.maxEntries=100`, gridlake keeps 1000);
- **two Delta snapshot partitions per core** (`spark.databricks.delta.snapshotPartitions`,
  gridlake uses one per core on a local master).

For each batch: wall time and how many classes Spark's code generator compiled
(`CodegenMetrics`). The first batches of a driver warm it up; the report compares the mean of
the batches after them. Results: `benchmarks/results/microbatch.json` and `.md`.

Example:
    $ make bench-microbatch
    $ .venv/bin/python -m benchmarks.bench_microbatch --devices 60 --batches 5 --rounds 1 \\
          --out /tmp/bench                                                  # a smoke run
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_stream import (
    cached_fleet,
    finish,
    int_options,
    new_results,
    run_sentence,
    say,
)

CODE_CACHE = "spark.sql.codegen.cache.maxEntries"
SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"
SETTINGS = (CODE_CACHE, SNAPSHOT_PARTITIONS)


def variants() -> tuple[tuple[str, str, dict[str, str]], ...]:
    """(name, label, settings changed from gridlake's session) of each driver compared."""
    return (
        ("gridlake", "gridlake's session", {}),
        ("spark_default", "Spark's default code cache", {CODE_CACHE: "100"}),
        ("snapshot_2x", "two snapshot partitions per core",
         {SNAPSHOT_PARTITIONS: str(2 * (os.cpu_count() or 2))}),
    )


@dataclass(frozen=True)
class MicroBatchOptions:
    devices: int = 300
    batches: int = 10
    warm_up: int = 3
    rounds: int = 2
    seed: int = 7


def parse_args(argv: list[str] | None) -> tuple[MicroBatchOptions, Path]:
    options, out, parser = int_options(argv, MicroBatchOptions(),
                                       "python -m benchmarks.bench_microbatch", __doc__,
                                       "microbatch")
    if options.batches <= options.warm_up:
        parser.error(f"--batches must be more than --warm-up ({options.warm_up})")
    return options, out


# -- one driver: a child process ---------------------------------------------------------------

def run_batches(landing: Path, out: Path) -> None:
    """Every landing file as one micro-batch into a new lake; per batch: seconds, compiles."""
    from benchmarks.bench_stream import _landing_files, bench_session
    from gridlake.ingest import WriteContext, record_batch, write_batch
    from gridlake.lake import open_lake

    spark, work = bench_session("gridlake-bench-microbatch", f"microbatch-{os.getpid()}")
    compiled = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    try:
        lake = open_lake(str(work / "lake"), create=True, spark=spark)
        batches = []
        for batch_id, path in enumerate(sorted(landing.glob("*.jsonl"))):
            raw = _landing_files(spark, path)  # one file: one micro-batch, as FileSource reads it
            ctx = WriteContext.now("bench-microbatch", batch_id, "stream", "bench")
            compiles0, t0 = compiled.getCount(), time.monotonic()
            result = write_batch(spark, lake, raw, ctx, may_be_replay=False)
            record_batch(spark, lake, result, ctx)
            batches.append({"seconds": time.monotonic() - t0, "records": result.records_read,
                            "compiles": compiled.getCount() - compiles0})
        out.write_text(json.dumps({"settings": {k: spark.conf.get(k) for k in SETTINGS},
                                   "batches": batches}), encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        spark.stop()


def run_driver(landing: Path, changed: dict[str, str]) -> dict:
    """One fresh driver over every batch, with gridlake's session but for `changed`."""
    env = dict(os.environ)
    if changed:
        extra = " ".join(f"{k}={v}" for k, v in changed.items())
        env["GRIDLAKE_SPARK_CONF"] = f"{env.get('GRIDLAKE_SPARK_CONF', '')} {extra}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "batches.json"
        subprocess.run([sys.executable, "-m", "benchmarks.bench_microbatch", "--child",
                        str(landing), str(out)], env=env, check=True)
        return json.loads(out.read_text(encoding="utf-8"))


# -- the parent: data, rounds, report -----------------------------------------------------------

def summarize(results: dict) -> dict:
    warm = results["options"]["warm_up"]
    out = {}
    for name, runs in results["measurements"].items():
        after = [b for run in runs for b in run["batches"][warm:]]
        out[name] = {"settings": runs[0]["settings"],
                     "seconds_per_batch": statistics.mean(b["seconds"] for b in after),
                     "compiles_per_batch": statistics.mean(b["compiles"] for b in after),
                     "records_per_batch": statistics.mean(b["records"] for b in after)}
    if "gridlake" in out:
        for name in out.keys() - {"gridlake"}:
            out[name]["gridlake_over_this"] = (out["gridlake"]["seconds_per_batch"]
                                               / out[name]["seconds_per_batch"])
    return out


def markdown(results: dict) -> str:
    s, o = results["summary"], results["options"]
    lines = [
        "# make bench-microbatch", "",
        run_sentence(results), "",
        f"{o['batches']} micro-batches of one landing file each (`write_batch` + `record_batch`) "
        f"per fresh driver, {o['rounds']} round(s) of every driver, alternating; the mean is "
        f"over the batches after the first {o['warm_up']} of each driver.", "",
        "| driver | code cache entries | snapshot partitions | records / batch | s / batch | "
        "classes compiled / batch | gridlake / this |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label, _ in variants():
        if name in s:
            r = s[name]
            ratio = r.get("gridlake_over_this")
            lines.append(f"| {label} | {r['settings'][CODE_CACHE]} | "
                         f"{r['settings'][SNAPSHOT_PARTITIONS]} | {r['records_per_batch']:,.0f} | "
                         f"{r['seconds_per_batch']:.2f} | {r['compiles_per_batch']:.0f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "`gridlake / this` below 1: gridlake's session takes that share of the time "
              "per micro-batch.", "", "Every batch of every driver: `microbatch.json`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        run_batches(Path(argv[1]), Path(argv[2]))
        return 0
    from gridlake.generator import GenerateOptions

    options, out_dir = parse_args(argv)
    results = new_results(options)
    fleet = cached_fleet(GenerateOptions(devices=options.devices, days=1, seed=options.seed,
                                         stream_files=options.batches, late_devices=0.0),
                         "micro-batch fleet")
    m = results["measurements"]
    try:
        for round_ in range(1, options.rounds + 1):
            for name, _, changed in variants():
                run = run_driver(fleet / "stream", changed)
                m.setdefault(name, []).append(run)
                say(f"round {round_}, {name} ({run['settings']}): " + ", ".join(
                    f"{b['seconds']:.1f} s/{b['compiles']}" for b in run["batches"]))
    finally:
        finish(results, out_dir, "microbatch", summarize, markdown, Path(tempfile.mkdtemp()),
               spark=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
