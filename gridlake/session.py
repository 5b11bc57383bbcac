"""The Spark session factory: the only place gridlake builds a SparkSession.

Where Spark runs is configuration: `GRIDLAKE_SPARK_MASTER` (default `local[*]`). The JVM jars
(Delta, the Kafka connector, S3A) are the ones `make jars` fetched with Maven into `.jvm/spark`.

Example:
    >>> from gridlake.session import spark_session
    >>> spark = spark_session(app_name="notebook")          # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from gridlake.errors import SetupError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MASTER = "local[*]"


def jars_dir() -> Path:
    """The folder of JVM jars fetched by Maven (`GRIDLAKE_JARS` overrides it)."""
    return Path(os.environ.get("GRIDLAKE_JARS", REPO_ROOT / ".jvm" / "spark"))


def spark_jars() -> list[str]:
    """Absolute paths of the jars every gridlake session loads."""
    folder = jars_dir()
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    if not any("delta-spark" in Path(j).name for j in jars):
        raise SetupError(
            f"no Delta jars found in {folder}; run `make jars` (Maven fetches them once)"
        )
    return jars


def _base_conf(master: str, app_name: str, testing: bool) -> dict[str, str]:
    jars = ",".join(spark_jars())
    conf = {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.jars": jars,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "2" if testing else "8",
        "spark.default.parallelism": "2" if testing else "8",
        "spark.ui.enabled": "false" if testing else "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        # Exactly-once and cheap MERGEs need optimized writes off and CDF on by default.
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "false",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.retentionDurationCheck.enabled": "true",
        "spark.sql.sources.partitionOverwriteMode": "static",
    }
    if master.startswith("local"):
        conf.update({
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            # Delta rebuilds its snapshot with 50 tasks by default, 3 times a commit: on one
            # machine that alone cost a quarter of a micro-batch (benchmarks/results/stream.md).
            "spark.databricks.delta.snapshotPartitions": str(2 * (os.cpu_count() or 2)),
        })
    if testing:
        conf.update({
            "spark.sql.adaptive.coalescePartitions.initialPartitionNum": "2",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.rdd.compress": "false",
            "spark.driver.memory": "2g",
        })
    else:
        conf["spark.driver.memory"] = os.environ.get("GRIDLAKE_DRIVER_MEMORY", "4g")
    return conf


def spark_session(app_name: str = "gridlake", master: str | None = None,
                  testing: bool = False, extra_conf: dict[str, str] | None = None):
    """Build (or return the running) SparkSession with Delta, configured from the environment.

    Parameters:
        app_name: name shown in the Spark UI and logs.
        master: Spark master URL; default `GRIDLAKE_SPARK_MASTER` or `local[*]`.
        testing: small shuffle partitions, no UI (the test suite's settings).
        extra_conf: more Spark settings, applied last.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    master = master or os.environ.get("GRIDLAKE_SPARK_MASTER", DEFAULT_MASTER)
    builder = SparkSession.builder
    conf = _base_conf(master, app_name, testing)
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("GRIDLAKE_SPARK_LOG_LEVEL", "ERROR"))
    return spark
