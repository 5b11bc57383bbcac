"""Fixtures of the streaming tests: one real Kafka broker (KRaft) for the whole run; the
exactly-once check against the oracle and the check of the decision and batch logs; and
`gridlake stream` as a process of its own, over a landing folder of the fleet's files."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from shared_schemas.tables import bronze_telemetry, quarantine_telemetry, silver_readings
from tests import oracle

# The line `gridlake stream` prints per micro-batch (`BatchResult.line`): batch id, read,
# upserted, duplicates/stale, quarantined, event dates, seconds, and a replay's suffix.
BATCH_LINE = re.compile(r"^batch (?P<batch>\d+): read (?P<read>\d+), "
                        r"upserted (?P<upserted>\d+), duplicates/stale (?P<stale>\d+), "
                        r"quarantined (?P<quarantined>\d+), event dates (?P<dates>\S+), "
                        r"(?P<seconds>\d+\.\d\d) s(?P<replayed> \(replayed: already committed\))?$",
                        re.MULTILINE)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A running one-node Kafka broker on a free 127.0.0.1 port, its data in a tmp folder."""
    from streaming.kafka_broker import KafkaBroker

    with KafkaBroker(tmp_path_factory.mktemp("kafka"), num_partitions=2) as broker:
        yield broker


def check_exactly_once(spark, lake, files: list[Path]) -> list:
    """Bronze holds every record of `files` once, quarantine every invalid one once, and silver
    the oracle's latest-seq truth with no duplicate key; returns the oracle's invalid records."""
    records = list(oracle.read_records(files))
    truth, invalid = oracle.silver_truth(records)
    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))
    assert bronze.count() == len(records)
    assert bronze.select("record_id").distinct().count() == len(records)
    quarantine = spark.read.format("delta").load(lake.path(quarantine_telemetry()))
    assert quarantine.count() == len(invalid)
    assert quarantine.select("record_id").distinct().count() == len(invalid)
    silver = spark.read.format("delta").load(lake.path(silver_readings()))
    rows = silver.select("device_id", "ts", "seq", "event_id").collect()
    assert len(rows) == len({(r[0], r[1]) for r in rows}), "duplicate keys in silver"
    assert {(r[0], r[1]): (r[2], r[3]) for r in rows} == {
        k: (v["seq"], v["_id"]) for k, v in truth.items()}
    return invalid


REPO = Path(__file__).resolve().parents[2]


class StreamProcess:
    """`gridlake stream` as its own process group; counts the records its batch lines report."""

    def __init__(self, source: str, lake: Path, *extra: str, **env_extra: str):
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "GRIDLAKE_DRIVER_MEMORY": "1g",
               **env_extra}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gridlake.cli", "stream", "--source", source,
             "--lake", str(lake), *extra],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.read, self.lines = 0, []
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()

    def _follow(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            found = re.match(r"batch \d+: read (\d+),", line)
            if found:
                self.read += int(found.group(1))

    def tail(self) -> str:
        return "".join(self.lines[-40:])

    def wait_for(self, records: int, timeout: float = 300) -> None:
        """Until the batch lines add up to `records` records read."""
        deadline = time.monotonic() + timeout
        while self.read < records and time.monotonic() < deadline:
            assert self.process.poll() is None, "the stream died:\n" + self.tail()
            time.sleep(0.5)
        assert self.read == records, f"read {self.read} of {records} in {timeout} s:\n{self.tail()}"

    def wait_for_line(self, prefix: str, timeout: float = 240) -> str:
        """The first output line starting with `prefix`, waiting while the stream runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if line.startswith(prefix)), None)
            if found is not None:
                return found
            assert self.process.poll() is None, f"the stream exited:\n{self.tail()}"
            time.sleep(0.2)
        raise AssertionError(f"no line {prefix!r} in {timeout} s:\n{self.tail()}")

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        """Wait for the stream to exit by itself (killing it after `timeout`): code, output."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            raise AssertionError(
                f"the stream still ran after {timeout} s:\n{self.tail()}") from None
        self._reader.join(timeout=10)
        return code, "".join(self.lines)

    def signal(self, sig: int) -> int:
        """Send `sig` to the whole process group (if it still runs); the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        code = self.process.wait(timeout=180)
        self._reader.join(timeout=10)
        return code

    def stop(self) -> int:
        """SIGTERM to the gridlake process alone, as a service manager stops it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=300)
        self._reader.join(timeout=10)
        return code


def check_logs(spark, lake, files: list[Path]) -> None:
    """A batch replayed after its MERGE committed logs and reports what that MERGE did: every
    valid record is decided exactly once, each batch's upserted rows (the MERGE's metrics)
    are its records that won (the decision log's own rule), and they cover every silver key;
    each batch's logged conflicts are its producer-conflict decisions."""
    records = list(oracle.read_records(files))
    truth, invalid = oracle.silver_truth(records)
    valid = len(records) - len(invalid)
    decisions = spark.read.format("delta").load(lake.path("_gridlake/decisions"))
    assert decisions.count() == decisions.select("record_id").distinct().count() == valid
    won = {(r["run_id"], r["batch_id"]): r["count"]
           for r in decisions.where("won").groupBy("run_id", "batch_id").count().collect()}
    batches = spark.read.format("delta").load(lake.path("_gridlake/batches")).collect()
    assert {(r["run_id"], r["batch_id"]): r["upserted"] for r in batches if r["upserted"]} == won
    conflicts = {(r["run_id"], r["batch_id"]): r["count"] for r in decisions.where(
        F.col("decision").startswith("producer_conflict")).groupBy("run_id", "batch_id")
        .count().collect()}
    assert {(r["run_id"], r["batch_id"]): r["conflicts"] for r in batches
            if r["conflicts"]} == conflicts
    assert len(truth) <= sum(won.values()) <= valid


def fleet_landing(fleet: Path, workdir: Path) -> tuple[Path, Path]:
    """A landing folder holding the fleet's stream files, and where the lake goes."""
    landing, lake_dir = workdir / "landing", workdir / "lake"
    landing.mkdir(parents=True)
    for path in sorted((fleet / "stream").glob("*.jsonl")):
        shutil.copy(path, landing / path.name)
    return landing, lake_dir


def file_stream(landing: Path, lake: Path, *extra: str, **env: str) -> StreamProcess:
    return StreamProcess(f"files:{landing}", lake, "--max-files-per-trigger", "1", *extra, **env)
