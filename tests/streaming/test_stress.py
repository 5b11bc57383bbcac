"""A random stress run: at least 100 steps of add data / start / stop / kill -9 / backfill /
wait / check, each drawn from a seeded generator whose seed is printed first, so a failure
replays with `GRIDLAKE_CHAOS_SEED=<seed>` and the test's id (printed with it).

- add: the next stream file lands in the landing folder (renamed into place, as a producer
  that writes files should);
- start: `gridlake stream` (1 file per micro-batch, 0.5 s trigger), half the time armed to
  SIGKILL itself at a random commit boundary (`gridlake.faults`) of its first batch with data;
- kill: SIGKILL of the stream's process group after a random 0-3 s;
- stop: SIGTERM, which must end the stream cleanly (exit 0) unless it already crashed;
- backfill: the next late report, loaded while the stream may be writing the same tables;
- check: stop, drain with `--available-now`, then every table must hold every record read so
  far exactly once, against the oracle.

`make test` runs a short one: 8 steps over the shared small fleet, drawn again (from the same
seeded generator) until a kill hits a running stream after data was added, and a backfill
is among them.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from batch.late_reports import backfill
from gridlake.cli import main
from gridlake.faults import POINTS
from gridlake.lake import open_lake
from tests.streaming.conftest import StreamProcess, check_exactly_once

STEPS = ("add", "start", "kill", "stop", "backfill", "wait", "check")
WEIGHTS = (5, 4, 2, 1, 1, 3, 1)


class Run:
    def __init__(self, spark, fleet, workdir, rng: random.Random):
        self.spark, self.rng = spark, rng
        self.pending = sorted((fleet / "stream").glob("*.jsonl"))
        self.late = sorted(p for p in (fleet / "late").iterdir() if p.is_file())
        self.landing, self.lake = workdir / "landing", workdir / "lake"
        self.landing.mkdir(parents=True)
        self.lake_handle = open_lake(str(self.lake), create=True, spark=spark)
        self.added, self.loaded = [], []
        self.stream: StreamProcess | None = None
        self.armed = False

    def step(self, name: str) -> str:
        return getattr(self, name)()

    def add(self) -> str:
        if not self.pending:
            return "nothing left to add"
        source = self.pending.pop(0)
        target = self.landing / source.name
        hidden = self.landing / f".{source.name}.tmp"  # Spark skips names starting with '.'
        hidden.write_bytes(source.read_bytes())
        hidden.rename(target)
        self.added.append(target)
        return source.name

    def start(self) -> str:
        if self.stream is not None and self.stream.process.poll() is None:
            return "already running"
        self._reap()
        env = {}
        if self.rng.random() < 0.5:
            env["GRIDLAKE_CRASH_AT"] = self.rng.choice(POINTS)
        self.armed = bool(env)
        self.stream = StreamProcess(f"files:{self.landing}", self.lake,
                                    "--max-files-per-trigger", "1", "--trigger", "0.5", **env)
        return f"started{' armed: ' + env['GRIDLAKE_CRASH_AT'] if env else ''}"

    def kill(self) -> str:
        if self.stream is None:
            return "not running"
        time.sleep(self.rng.uniform(0.0, 3.0))
        if self.stream.process.poll() is not None:
            return self._reap()
        code = self.stream.signal(signal.SIGKILL)
        self.stream = None
        return f"killed (exit {code})"

    def stop(self) -> str:
        if self.stream is None:
            return "not running"
        code = self.stream.stop()
        crashed = self.armed and code == -signal.SIGKILL
        # Before its "streaming ..." line the process is still starting: nothing to finish.
        starting = code == -signal.SIGTERM and not any(
            line.startswith("streaming ") for line in self.stream.lines)
        assert code == 0 or crashed or starting, (
            f"SIGTERM ended the stream with {code}:\n{self.stream.tail()}")
        self.stream = None
        return f"stopped (exit {code})"

    def backfill(self) -> str:
        if not self.late:
            return "no late report left"
        report = self.late.pop(0)
        result = backfill(self.spark, self.lake_handle, [report], rollup=False)
        self.loaded.append(report)
        return f"{report.name}: {result.total('records_read')} record(s) read"

    def wait(self) -> str:
        seconds = self.rng.uniform(1.0, 6.0)
        time.sleep(seconds)
        return f"{seconds:.1f} s"

    def check(self) -> str:
        if self.stream is not None:
            self.stop()
        drain = StreamProcess(f"files:{self.landing}", self.lake, "--max-files-per-trigger", "4",
                              "--available-now")
        code, _ = drain.finish(timeout=900)  # a hung drain is killed and fails the run
        assert code == 0, drain.tail()
        if self.added or self.loaded:
            check_exactly_once(self.spark, self.lake_handle, [*self.added, *self.loaded])
        return f"{len(self.added)} file(s) streamed, {len(self.loaded)} late report(s): exact"

    def _reap(self) -> str:
        """Forget a stream that exited by itself: only its armed crash point may end it."""
        if self.stream is None:
            return "not running"
        code = self.stream.process.poll()
        self.stream.signal(signal.SIGKILL)
        assert code is None or (self.armed and code == -signal.SIGKILL), (
            f"the stream exited by itself with {code}:\n{self.stream.tail()}")
        self.stream = None
        return f"had crashed at its armed point (exit {code})"


def kills_a_fed_stream(steps: list[str]) -> bool:
    """Does a kill come while a stream runs (started, not stopped, checked or killed since)
    after data was added?"""
    running = added = False
    for name in steps:
        if name == "kill" and running and added:
            return True
        running = name == "start" or (running and name not in ("stop", "check", "kill"))
        added = added or name == "add"
    return False


def draw_steps(rng: random.Random, count: int, must: bool = False) -> list[str]:
    """`count` steps; with `must`, drawn again until a kill hits a running stream after data
    was added, and a backfill is among them (a short run that did neither would prove little)."""
    while True:
        steps = rng.choices(STEPS, WEIGHTS, k=count)
        if not must or ("backfill" in steps and kills_a_fed_stream(steps)):
            return steps


def stress_run(spark, fleet, workdir, steps: int, short: bool = False) -> None:
    seed = int(os.environ.get("GRIDLAKE_CHAOS_SEED", time.time()))
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    print(f"stress run: seed {seed}, {steps} steps "
          f"(replay: GRIDLAKE_CHAOS_SEED={seed} .venv/bin/python -m pytest '{test}')")
    rng = random.Random(seed)
    run = Run(spark, fleet, workdir, rng)
    for number, name in enumerate(draw_steps(rng, steps, must=short), start=1):
        print(f"step {number:3d} {name}: {run.step(name)}", flush=True)
    while run.pending:
        run.add()
    while run.late:
        run.backfill()
    print(f"final check: {run.check()}")
    assert run.added and run.loaded


@pytest.mark.slow
def test_random_stress_run_keeps_every_record_exactly_once(spark, tmp_path):
    fleet = tmp_path / "fleet"
    assert main(["generate", "--out", str(fleet), "--devices", "10", "--days", "2",
                 "--stream-files", "40", "--late-devices", "0.4", "--corrupt", "0.05",
                 "--duplicates", "0.05", "--corrections", "0.05", "--conflicts", "0.02"]) == 0
    stress_run(spark, fleet, tmp_path / "run", int(os.environ.get("GRIDLAKE_STRESS_STEPS", 100)))


def test_a_short_random_stress_run_keeps_every_record_exactly_once(spark, small_fleet,
                                                                    tmp_path):
    stress_run(spark, small_fleet, tmp_path / "run", steps=8, short=True)
