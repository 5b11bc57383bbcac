"""The lake's layout and table access: one root, the tables of DESIGN.md beneath it.

A folder is a gridlake lake when it holds `_gridlake/lake.json`. Tables are created on first
write from their definitions in `shared_schemas.tables`; the contract version applied to the
lake is recorded so an incompatible change is refused at start-up, never mid-stream.

Example:
    >>> lake = open_lake("/data/lake", create=True, spark=spark)      # doctest: +SKIP
    >>> spark.read.format("delta").load(lake.path(silver_readings()))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gridlake.errors import ContractError, NotALakeError
from shared_schemas import CURRENT, Contract
from shared_schemas.compat import check_compatible, contract_from_dict, contract_to_dict
from shared_schemas.tables import TableSpec, core_tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

MARKER = "_gridlake/lake.json"
# The environment variable naming the lake when a command or notebook is given none.
LAKE_VARIABLE = "GRIDLAKE_LAKE"
CONTRACT_FILE = "_gridlake/contract.json"
LAYOUT_VERSION = 1


def _is_url(root: str) -> bool:
    return "://" in root


@dataclass(frozen=True)
class Lake:
    """A lake root and the paths of its tables."""

    root: str

    def path(self, table: TableSpec | str) -> str:
        relative = table if isinstance(table, str) else table.path
        return f"{self.root.rstrip('/')}/{relative}"

    def default_checkpoint(self, source_slug: str) -> str:
        return self.path(f"_gridlake/checkpoints/{source_slug}")


# -- small file helpers that work for local folders and for Hadoop URLs (s3a://) ---------------

def hadoop_fs(spark, path: str):
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark._jsc.hadoopConfiguration()), hpath


def read_text(path: str, spark=None) -> str | None:
    """The text of a small file under the lake, or None when it does not exist."""
    if not _is_url(path):
        p = Path(path)
        return p.read_text(encoding="utf-8") if p.is_file() else None
    fs, hpath = hadoop_fs(spark, path)
    if not fs.exists(hpath):
        return None
    stream = fs.open(hpath)
    try:
        reader = spark._jvm.java.io.BufferedReader(
            spark._jvm.java.io.InputStreamReader(stream, "UTF-8"))
        lines = []
        while (line := reader.readLine()) is not None:
            lines.append(line)
        return "\n".join(lines)
    finally:
        stream.close()


def write_text(path: str, text: str, spark=None) -> None:
    """Write a small file under the lake atomically (rename over on local disks)."""
    if not _is_url(path):
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
        return
    fs, hpath = hadoop_fs(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def file_uri(spark, path: str) -> str:
    """A file's name as Spark's file sources report it (`_metadata.file_path`, `file:/a%20b`)."""
    fs, hpath = hadoop_fs(spark, path)
    uri = fs.makeQualified(hpath).toUri()
    if not uri.getRawAuthority():  # local files: Spark writes `file:/x`, Hadoop `file:///x`
        return f"{uri.getScheme()}:{uri.getRawPath()}"
    return uri.toString()


def _root_is_empty(root: str, spark) -> bool:
    if not _is_url(root):
        p = Path(root)
        return not p.exists() or (p.is_dir() and not any(p.iterdir()))
    fs, hpath = hadoop_fs(spark, root)
    return not fs.exists(hpath) or len(fs.listStatus(hpath)) == 0


# -- opening a lake ---------------------------------------------------------------------------

def default_lake_root() -> str:
    """`GRIDLAKE_LAKE`, or `lake/` at the repository root."""
    from gridlake.session import REPO_ROOT

    return os.environ.get(LAKE_VARIABLE, str(REPO_ROOT / "lake"))


def open_lake(root: str | None, create: bool = False, spark=None,
              contract: Contract = CURRENT) -> Lake:
    """Open the lake at `root`; with `create`, make it (and its tables) if it is new.

    Raises NotALakeError when the folder exists but is not a gridlake lake, and ContractError
    when `contract` cannot be applied to the tables already there.
    """
    root = root or default_lake_root()
    if not _is_url(root):
        root = str(Path(root).resolve())
        if Path(root).exists() and not Path(root).is_dir():
            raise NotALakeError(f"{root} is a file, not a lake folder")
    lake = Lake(root)
    marker = read_text(lake.path(MARKER), spark)
    if marker is None:
        if not create:
            raise NotALakeError(
                f"{root} is not a gridlake lake (no {MARKER}); "
                "create one with `gridlake stream` or `gridlake backfill`")
        if not _root_is_empty(root, spark):
            raise NotALakeError(
                f"{root} is not empty and is not a gridlake lake; choose an empty or new folder")
        write_text(lake.path(MARKER), json.dumps({
            "layout_version": LAYOUT_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }, indent=2), spark)
    if spark is not None and create:
        apply_contract(spark, lake, contract)
        ensure_tables(spark, lake, contract)
    return lake


def applied_contract(lake: Lake, spark=None) -> Contract | None:
    text = read_text(lake.path(CONTRACT_FILE), spark)
    return contract_from_dict(json.loads(text)) if text else None


def apply_contract(spark, lake: Lake, contract: Contract) -> None:
    """Record `contract` as the lake's contract, refusing an incompatible change."""
    previous = applied_contract(lake, spark)
    if previous is not None:
        problems = check_compatible(previous, contract)
        if problems:
            raise ContractError(
                f"contract v{contract.version} cannot be applied to the lake at {lake.root} "
                f"(it holds v{previous.version}): " + "; ".join(problems))
        if previous.version >= contract.version:
            return
    write_text(lake.path(CONTRACT_FILE), json.dumps(contract_to_dict(contract), indent=2), spark)


def ensure_tables(spark, lake: Lake, contract: Contract = CURRENT) -> None:
    """Create every core table that does not exist yet (idempotent, safe to race)."""
    from delta.tables import DeltaTable

    for spec in core_tables(contract):
        if DeltaTable.isDeltaTable(spark, lake.path(spec)):
            continue
        builder = (DeltaTable.createIfNotExists(spark)
                   .location(lake.path(spec))
                   .addColumns(spec.schema))
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        for key, value in spec.table_properties.items():
            builder = builder.property(key, value)
        if spec.description:
            builder = builder.comment(spec.description)
        try:
            builder.execute()
        except Exception as exc:  # another writer created it first
            if not DeltaTable.isDeltaTable(spark, lake.path(spec)):
                raise exc


def table_version(spark, table_path: str) -> int | None:
    """The latest committed version of a Delta table, from its log's file names (no Spark job).

    Returns None when the path holds no Delta table yet.
    """
    fs, log_dir = hadoop_fs(spark, f"{table_path.rstrip('/')}/_delta_log")
    if not fs.exists(log_dir):
        return None
    versions = [int(name[:-5]) for status in fs.listStatus(log_dir)
                if (name := status.getPath().getName()).endswith(".json") and name[:-5].isdigit()]
    return max(versions) if versions else None


def commit_actions(spark, path: str, version: int,
                   kinds: tuple[str, ...] = ("commitInfo", "txn")) -> list[dict]:
    """The actions of these `kinds` in one commit of a Delta table, one dict each (empty when
    the commit file is gone, e.g. cleaned up after a checkpoint).

    Read from the commit file itself (one JSON line per action), where `DeltaTable.history`
    loads a snapshot and runs Spark jobs. Only lines of the wanted kinds are parsed: a MERGE's
    commit holds a line per file added or removed.
    """
    return actions_in(read_text(commit_file(path, version), spark) or "", kinds)


def commit_file(path: str, version: int) -> str:
    """Where version `version` of the Delta table at `path` keeps its commit."""
    return f"{path.rstrip('/')}/_delta_log/{version:020d}.json"


def actions_in(commit: str, kinds: tuple[str, ...]) -> list[dict]:
    """The actions of these `kinds` in a commit file's text, one dict each.

    Example:
        >>> actions_in('{"commitInfo":{}}\\n{"add":{"path":"a"}}', ("add",))
        [{'add': {'path': 'a'}}]
    """
    wanted = tuple(f'{{"{kind}"' for kind in kinds)
    return [json.loads(line) for line in commit.splitlines() if line.startswith(wanted)]


# How many of a table's newest commits are searched for one that a run wrote.
HISTORY_SEARCHED = 200

# Error names (Spark's conditions and the JVM's exceptions) of a read that met data no longer
# there: a file vacuumed away, or a version whose log was cleaned up.
_DATA_GONE_NAMES = (
    "FAILED_READ_FILE.FILE_NOT_EXIST",
    "FileNotFoundException",
    "DELTA_FILE_NOT_FOUND",
    "DELTA_NO_RECREATABLE_HISTORY_FOUND",
    "DELTA_VERSION_NOT_FOUND",
    "Invalid table version",  # delta-rs, for a version whose commit is gone
)


# delta-rs's object store, for a file that is not there.
_OBJECT_GONE = re.compile(r"Object at location \S+ not found")


def is_data_gone(error: BaseException) -> bool:
    """Whether `error` says a read (Spark's or delta-rs's) met a file or table version that no
    longer exists.

    Example:
        >>> is_data_gone(OSError("Object at location /l/x.parquet not found: No such file"))
        True
    """
    text = f"{type(error).__name__}: {error}"
    return any(name in text for name in _DATA_GONE_NAMES) or bool(_OBJECT_GONE.search(text))


def missing_files(frame: DataFrame) -> list[str]:
    """The data files a Delta read `frame` would scan that storage no longer holds (a vacuum
    took them). Found from the table's log and a listing on the driver: nothing is read, so
    no task fails and Spark logs no error."""
    missing = []
    for name in frame.inputFiles():
        fs, path = hadoop_fs(frame.sparkSession, name)
        if not fs.exists(path):
            missing.append(name)
    return missing


def unreadable(frame: Callable[[], DataFrame]) -> bool:
    """Whether the frame `frame()` builds cannot be read because data is gone: its version's
    log was cleaned up, one of its data files was vacuumed, or reading every row fails with
    `is_data_gone` (a vacuumed deletion vector); other errors are raised."""
    try:
        built = frame()
        if missing_files(built):
            return True
        built.write.format("noop").mode("overwrite").save()
    except Exception as error:
        if is_data_gone(error):
            return True
        raise
    return False


def newest_commit(spark, path: str, matches: Callable[[list[dict]], bool], last: int
                   ) -> tuple[int, list[dict]] | None:
    """The newest of the last `last` commits whose actions `matches`, with those actions.

    Walks the commit files from the newest down and stops at the first match (no Spark job).
    """
    newest = table_version(spark, path)
    if newest is None:
        return None
    for version in range(newest, max(newest - last, -1), -1):
        actions = commit_actions(spark, path, version)
        if matches(actions):
            return version, actions
    return None


def transaction_commit(spark, path: str, app_id: str, txn_version: int,
                       last: int = HISTORY_SEARCHED) -> tuple[int, dict] | None:
    """The version and `commitInfo` of the commit that carried Delta's idempotent transaction
    (`app_id`, `txn_version`), among the last `last` commits; None if not found.

    What a replayed write, skipped by Delta, needs to report what its first attempt did: the
    commit info holds the version it read (`readVersion`) and its `operationMetrics`.
    """
    def matches(actions: list[dict]) -> bool:
        return any(a.get("txn", {}).get("appId") == app_id
                   and a["txn"].get("version") == txn_version for a in actions)

    found = newest_commit(spark, path, matches, last)
    if found is None:
        return None
    version, actions = found
    return version, next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
