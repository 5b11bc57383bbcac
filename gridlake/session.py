"""The Spark session factory: the only place gridlake builds a SparkSession.

Where Spark runs and where the lake lives are configuration, read here and nowhere else:

| variable | what it sets |
|---|---|
| `GRIDLAKE_SPARK_MASTER` | the master: `local[*]` (default), `spark://host:7077`, `k8s://...`, `yarn` |
| `GRIDLAKE_S3_ENDPOINT` | an S3-compatible endpoint for `s3a://` lakes (default: AWS S3) |
| `GRIDLAKE_S3_REGION` | the bucket's region (default `AWS_REGION` / `AWS_DEFAULT_REGION`) |
| `GRIDLAKE_DELTA_DYNAMODB_TABLE` | commit `s3a://` tables through Delta's DynamoDB log store |
| `GRIDLAKE_SPARK_CONF` | any Spark settings, `key=value` separated by spaces, applied last |
| `SPARK_CONF_DIR` | Spark's own `spark-defaults.conf`, for settings gridlake does not set |

Credentials are never configured here: S3A and the DynamoDB log store use the AWS default
credential chain (environment variables, profile, container or instance role). The JVM jars
(Delta, the Kafka connector, S3A and the AWS SDK modules it needs) are the ones `make jars`
fetched with Maven into `.jvm/spark`; on a cluster the driver ships them to the executors.

Example:
    >>> from gridlake.session import spark_session
    >>> spark = spark_session(app_name="notebook")          # doctest: +SKIP
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
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


DYNAMODB_LOG_STORE = "io.delta.storage.S3DynamoDBLogStore"
DYNAMODB_LOG_STORE_JAR = "delta-storage-s3-dynamodb"


def is_local_master(master: str) -> bool:
    return master.startswith("local")


def s3_endpoint_and_region(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The S3 endpoint (None: AWS S3) and the bucket's region (None: the SDK's default)."""
    return env.get("GRIDLAKE_S3_ENDPOINT"), (env.get("GRIDLAKE_S3_REGION")
                                              or env.get("AWS_REGION")
                                              or env.get("AWS_DEFAULT_REGION"))


def storage_conf(env: Mapping[str, str], jars: list[str]) -> dict[str, str]:
    """Spark settings for object-store lakes, from the `GRIDLAKE_S3_*` and
    `GRIDLAKE_DELTA_DYNAMODB_TABLE` variables (none set: none).

    Raises SetupError when the DynamoDB log store is asked for but its jar is not there.
    """
    conf: dict[str, str] = {}
    endpoint, region = s3_endpoint_and_region(env)
    if endpoint:
        # S3-compatible stores (MinIO, Ceph, moto) serve buckets as paths, not host names.
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        if endpoint.startswith("http://"):
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    table = env.get("GRIDLAKE_DELTA_DYNAMODB_TABLE")
    if table:
        if not any(Path(j).name.startswith(DYNAMODB_LOG_STORE_JAR) for j in jars):
            raise SetupError(
                f"GRIDLAKE_DELTA_DYNAMODB_TABLE is set but no {DYNAMODB_LOG_STORE_JAR} jar is "
                f"in {jars_dir()}; add it (with the AWS SDK's dynamodb module) or unset the "
                f"variable")
        prefix = f"spark.io.delta.storage.{DYNAMODB_LOG_STORE.rsplit('.', 1)[1]}"
        conf.update({
            # Both schemes: Delta picks the log store by the table path's scheme.
            "spark.delta.logStore.s3a.impl": DYNAMODB_LOG_STORE,
            "spark.delta.logStore.s3.impl": DYNAMODB_LOG_STORE,
            f"{prefix}.ddb.tableName": table,
            f"{prefix}.ddb.region": region or "us-east-1",
        })
    return conf


def object_store_options(env: Mapping[str, str]) -> dict[str, str]:
    """delta-rs storage options for object-store lakes, from the same `GRIDLAKE_S3_*` variables
    as `storage_conf` (none set: none, and delta-rs reads the usual `AWS_*` variables)."""
    options: dict[str, str] = {}
    endpoint, region = s3_endpoint_and_region(env)
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if region:
        options["AWS_REGION"] = region
    return options


def conf_from_text(text: str) -> dict[str, str]:
    """`spark.a=1 spark.b='x y'` → {"spark.a": "1", "spark.b": "x y"} (shell quoting), as
    `GRIDLAKE_SPARK_CONF` holds it."""
    conf = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("spark."):
            raise SetupError(
                f"GRIDLAKE_SPARK_CONF holds {item!r}; each item must be spark.KEY=VALUE")
        conf[key] = value
    return conf


def _base_conf(master: str, app_name: str, testing: bool) -> dict[str, str]:
    jars = spark_jars()
    conf = {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.jars": ",".join(jars),
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
        # Delta's SQL parser drops the values of `spark.sql(query, args=...)` on Spark 4.1+
        # (delta-io/delta#7640); the legacy binding keeps parameterized SQL, values as data.
        "spark.sql.legacy.parameterSubstitution.constantsOnly": "true",
        # A micro-batch runs about 200 generated-code classes (its own plans and Delta's);
        # Spark keeps 100, so every batch compiled them all again, cold for the JIT: about
        # 2 s of each small batch (docs/operations.md, "Where a micro-batch spends its time").
        "spark.sql.codegen.cache.maxEntries": "1000",
    }
    conf.update(storage_conf(os.environ, jars))
    if is_local_master(master):
        cores = str(os.cpu_count() or 2)
        conf.update({
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            # Delta rebuilds a table's state with 50 tasks by default, for every idempotent
            # write: on one machine that alone cost a quarter of a micro-batch
            # (benchmarks/results/stream.md). One task per core is the least that keeps every
            # core busy (make bench-microbatch compares it with two per core).
            "spark.databricks.delta.snapshotPartitions": cores,
            # VACUUM lists a table's folders in one Spark job of this many tasks (10,000 by
            # default): 23.9 s for a small table on 2 cores, 1.8 s with one task per core
            # (make bench-vacuum). `forget` vacuums the tables it erased rows from.
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": cores,
        })
    else:
        # Executors start Python workers with the driver's interpreter path: the same
        # virtualenv must be installed at that path on every worker (PYSPARK_PYTHON overrides).
        conf["spark.pyspark.python"] = os.environ.get("PYSPARK_PYTHON", sys.executable)
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
        extra_conf: more Spark settings, applied last (after `GRIDLAKE_SPARK_CONF`).
    """
    master = master or os.environ.get("GRIDLAKE_SPARK_MASTER", DEFAULT_MASTER)
    if is_local_master(master):
        # On a cluster the driver must be reachable by the executors: there SPARK_LOCAL_IP
        # (or Spark's own choice of this host's address) decides, never a loopback default.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (the .gz reader's UDF) start PYSPARK_PYTHON, else whatever `python3` is
    # on the PATH: the driver's own interpreter is the one known to hold pyspark.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    conf = _base_conf(master, app_name, testing)
    conf.update(conf_from_text(os.environ.get("GRIDLAKE_SPARK_CONF", "")))
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("GRIDLAKE_SPARK_LOG_LEVEL", "ERROR"))
    return spark
