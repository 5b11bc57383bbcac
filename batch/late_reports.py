"""Late reports: files of buffered readings that offline devices upload when they reconnect.

A late report is a `.jsonl` file (one CloudEvent per line), the same gzipped (`.jsonl.gz`), or
a `.json` file holding a CloudEvents batch (a JSON array, one event per element). Backfill
loads them through the same write path as the stream (`gridlake.ingest.write_batch`), so the
same rules decide what is valid, what is a duplicate and which version of a reading wins.

A file is known by the SHA-256 of its bytes: `_gridlake/loaded_files` lists every file loaded,
and a file whose content is already there is skipped, whatever its name. The run id of a load
is derived from the hashes of its files, so a load that crashed half-way and is run again
replays as the same transaction (Delta's transaction ids) instead of loading twice.

What cannot be split into records is still kept, never dropped: a `.json` file that is not a
JSON array becomes one record holding the whole file (no line number), validated like any
other: garbage is quarantined, while a `.json` holding one CloudEvent object (CloudEvents'
single-event JSON format) is accepted. A damaged file loads what can be trusted (the lines
before the cut of a `.gz` cut short, the gzip members before a corrupt one, the elements of a
JSON array before it breaks off) and is also kept whole as one more record (no line number),
which the rules quarantine: the bytes as received stay in the lake, and the damage is visible
per file (`BackfillResult.damaged`).

Example:
    >>> result = backfill(spark, lake, ["fleet/late"])                        # doctest: +SKIP
    >>> print("\\n".join(result.lines()))                                     # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.rollups import RollupResult, rollup_changed
from gridlake.errors import BadArgumentError
from gridlake.gunzip import gunzip_prefix
from gridlake.ingest import BatchResult, WriteContext, record_batch, write_batch
from gridlake.lake import Lake, file_uri
from gridlake.landing import HIDDEN, MAX_FILE_BYTES, RECORD_SUFFIXES, few, too_large_sentence
from gridlake.retry import guarded_write
from shared_schemas import CURRENT, Contract
from shared_schemas.tables import RAW_COLUMNS, SOURCE_COLUMNS, loaded_files
from streaming.sources import file_lines, file_record_id, file_records, read_files

LINES, BATCH = "lines", "batch"
SUFFIXES = (*((suffix, LINES) for suffix in RECORD_SUFFIXES), (".json", BATCH))
# The raw records a batch file is split into here, before their record ids are set.
_UNNAMED_SCHEMA = T.StructType([f for f in SOURCE_COLUMNS + RAW_COLUMNS
                                if f.name != "record_id"])
_CHUNK = 1 << 20
BYTES_PER_BATCH = 128 << 20


# -- pure -------------------------------------------------------------------------------------

def report_kind(name: str) -> str | None:
    """`lines` (.jsonl, .jsonl.gz), `batch` (.json) or None for any other file name."""
    for suffix, kind in SUFFIXES:
        if name.endswith(suffix):
            return kind
    return None


def json_batch_elements(content: bytes) -> tuple[list[bytes], bool] | None:
    """The exact bytes of each element of a top-level JSON array, and whether the array is
    whole; None if the content does not open with `[` (as UTF-8 text).

    Elements are sliced out of the text as written (not re-serialised), so each record's
    payload is what the device sent. An array that breaks off (cut short, a malformed element,
    bytes that are not UTF-8, text after its `]`) gives the elements before the break and
    False.
    """
    try:
        text = content.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:  # an array breaks off where the bytes stop being UTF-8
        split = json_batch_elements(content[:exc.start]) if exc.start else None
        return None if split is None else (split[0], False)
    # Only where each element ends is needed: numbers are not converted (so a number too long
    # for int() is no error).
    decoder = json.JSONDecoder(parse_int=lambda _: None, parse_float=lambda _: None,
                               parse_constant=lambda _: None)
    whitespace = " \t\n\r"

    def skip(i: int) -> int:
        while i < len(text) and text[i] in whitespace:
            i += 1
        return i

    i = skip(0)
    if i == len(text) or text[i] != "[":
        return None
    i = skip(i + 1)
    elements: list[bytes] = []
    if i < len(text) and text[i] == "]":
        return elements, skip(i + 1) == len(text)
    while True:
        try:
            _, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):  # malformed, or nested past Python's limit
            return elements, False
        if end == len(text) and text[i] in "-0123456789":  # a number the text ends in may
            return elements, False                         # be cut short: not taken
        elements.append(text[i:end].encode("utf-8"))
        i = skip(end)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
            continue
        if i < len(text) and text[i] == "]":
            return elements, skip(i + 1) == len(text)
        return elements, False


def group_run_id(hashes: Iterable[str]) -> str:
    """The run id of loading these files: from the one file's hash, or from all of them."""
    hashes = sorted(set(hashes))
    if len(hashes) == 1:
        return f"backfill-{hashes[0][:16]}"
    return f"backfill-{hashlib.sha256(chr(10).join(hashes).encode()).hexdigest()[:16]}"


def _raw_record(source: str, line: int | None, payload: bytes) -> dict:
    """One raw record of a file, with the columns `file_lines` gives but the record id
    (`read_reports` adds it with `file_record_id`, as `file_lines` does)."""
    return {
        "source_kind": "file", "source_file": source, "source_line": line,
        "kafka_topic": None, "kafka_partition": None, "kafka_offset": None,
        "payload": payload, "kafka_key": None, "headers": None, "kafka_timestamp": None,
    }


def batch_file_records(source: str, content: bytes) -> list[dict]:
    """A CloudEvents batch file → one record per array element (line = 1-based index), and
    the whole file (no line) as one more when the array breaks off; anything but a JSON array
    → one record holding the whole file."""
    split = json_batch_elements(content)
    if split is None:
        return [_raw_record(source, None, content)]
    elements, whole = split
    records = [_raw_record(source, i, payload) for i, payload in enumerate(elements, start=1)]
    return records if whole else [*records, _raw_record(source, None, content)]


def batch_file_damage(content: bytes) -> str | None:
    """What is wrong with a CloudEvents batch file's array, None if nothing (or not an array)."""
    split = json_batch_elements(content)
    if split is None or split[1]:
        return None
    return (f"its JSON array breaks off after element {len(split[0])}; the elements before "
            "the break were loaded")


# -- the files --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportFile:
    """A late-report file as found on disk: its kind, content hash and what is damaged in it
    (None when it reads to the end)."""

    path: Path
    kind: str
    sha256: str
    size: int
    damage: str | None = None


def _folder_entries(folder: Path) -> tuple[list[Path], list[str]]:
    """A folder's late reports (files named like one) and the rest of what it holds (other
    files, and subfolders as `name/`), leaving out names that start with a dot (an upload in
    progress)."""
    reports: list[Path] = []
    others: list[str] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and report_kind(p.name):
            reports.append(p)
        else:
            others.append(os.path.join(folder, p.name + ("/" if p.is_dir() else "")))
    return reports, others


def find_report_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """The late reports among `paths`: files named, and the report files directly inside named
    folders; and what those folders hold besides, which backfill leaves alone
    (`_folder_entries`: other files, subfolders as `name/`). Each once."""
    found: dict[Path, None] = {}
    others: dict[str, None] = {}
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise BadArgumentError(
                f"{str(text)!r} does not exist; give late-report files or folders of them")
        if path.is_dir():
            reports, rest = _folder_entries(path.resolve())
            found.update(dict.fromkeys(p.resolve() for p in reports))
            others.update(dict.fromkeys(rest))
        elif report_kind(path.name):
            found[path.resolve()] = None
        else:
            raise BadArgumentError(
                f"{str(text)!r} is not a late report; expected a .jsonl, .jsonl.gz or .json file")
    return list(found), list(others)


def passed_over_sentence(others: list[str]) -> str:
    """What backfill says of the entries of its folders that it leaves alone."""
    suffixes = ", ".join(suffix for suffix, _ in SUFFIXES)
    return (f"{len(others)} file(s) or folder(s) in the folders given are not late reports "
            f"(the {suffixes} files directly in them) and are not loaded: {few(others)}")


def inspect_file(path: Path) -> ReportFile:
    """Hash a file and find damage (a .gz that does not decompress to its end, a JSON array
    that breaks off); raises OSError if it cannot be read (errno EFBIG: over MAX_FILE_BYTES)."""
    kind = report_kind(path.name) or LINES
    if (size := path.stat().st_size) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, too_large_sentence(size))
    if kind == LINES and not path.name.endswith(".gz"):  # hashed as it streams by
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return ReportFile(path, kind, digest.hexdigest(), size)
    content = path.read_bytes()  # read once, for the hash and the damage
    sha256 = hashlib.sha256(content).hexdigest()
    if kind == BATCH:
        return ReportFile(path, kind, sha256, len(content), batch_file_damage(content))
    return ReportFile(path, kind, sha256, len(content), gunzip_prefix(content, keep=False)[1])


def spark_can_read(path: Path) -> bool:
    """Whether Spark's file sources can open the file by its path: Hadoop reads a `:` as a
    URI scheme, and Spark passes over a hidden name even when it is given (`read_files`
    escapes glob characters)."""
    return ":" not in str(path) and not path.name.startswith(HIDDEN)


def _whole_files(spark, files: list[tuple[str, bytes]]) -> DataFrame:
    """(path, content) frames built here for the stream's readers; bytes as they were sent."""
    return spark.createDataFrame(files, "path string, content binary")


def source_names(spark, files: list[ReportFile]) -> dict[Path, str]:
    """Each file's `source_file` exactly as the stream's `file_lines` names it.

    One tiny job through `file_lines` itself (each file's URI as its only line), so lineage
    of records split here matches records split by Spark, with no second naming rule.
    """
    uris = {file_uri(spark, str(f.path)): f.path for f in files}
    probe = _whole_files(spark, [(uri, uri.encode()) for uri in uris]).transform(file_lines())
    return {uris[bytes(r["payload"]).decode()]: r["source_file"]
            for r in probe.select("payload", "source_file").collect()}


def read_reports(spark, files: list[ReportFile], names: dict[Path, str]) -> DataFrame:
    """Raw records (bronze's source columns) of report files; `names` from `source_names`.

    JSON-lines files, gzipped or not, damaged or not, go through the stream's own reader
    (`read_files`, `file_records`): by Spark from their paths, or sent from here when Spark
    cannot open their names. Batch files are split here.
    """
    lines = [f for f in files if f.kind == LINES]
    by_spark = [f for f in lines if spark_can_read(f.path)]
    by_name = [(file_uri(spark, str(f.path)), f.path.read_bytes())
               for f in lines if f not in by_spark]
    rows = [record for f in files if f.kind == BATCH
            for record in batch_file_records(names[f.path], f.path.read_bytes())]
    frames = [spark.createDataFrame(rows, _UNNAMED_SCHEMA).withColumn(
        "record_id", file_record_id(F.col("source_file"), F.col("source_line")))]
    if by_name:
        frames.append(_whole_files(spark, by_name).transform(file_records()))
    if by_spark:
        frames.append(read_files(spark, [str(f.path) for f in by_spark]))
    raw = frames[0]
    for frame in frames[1:]:
        raw = raw.unionByName(frame)
    return raw


# -- the lake ---------------------------------------------------------------------------------

def already_loaded(spark, lake: Lake, hashes: list[str]) -> set[str]:
    """The hashes among `hashes` that `_gridlake/loaded_files` already lists."""
    if not hashes:
        return set()
    table = spark.read.format("delta").load(lake.path(loaded_files()))
    return {r[0] for r in table.where(F.col("sha256").isin(*hashes)).select("sha256").collect()}


def record_loaded(spark, lake: Lake, files: list[ReportFile], run_id: str,
                  records: dict[str, int]) -> None:
    """Add the files to `_gridlake/loaded_files`, once per run (a replay is skipped by Delta)."""
    spec = loaded_files()
    loaded_at = dt.datetime.now(dt.UTC)
    rows = [{"sha256": f.sha256, "path": str(f.path), "size": f.size, "loaded_at": loaded_at,
             "run_id": run_id, "records": records.get(str(f.path), 0)} for f in files]
    frame = spark.createDataFrame(rows, spec.schema)
    guarded_write(lambda: (frame.write.format("delta").mode("append")
                           .option("txnAppId", run_id).option("txnVersion", 0)
                           .save(lake.path(spec))),
                  f"loaded-files record of {run_id}")


def _records_per_file(raw: DataFrame, names: dict[Path, str]) -> dict[str, int]:
    counts = {r["source_file"]: r["count"] for r in raw.groupBy("source_file").count().collect()}
    return {str(path): counts.get(name, 0) for path, name in names.items()}


# -- the job ----------------------------------------------------------------------------------

@dataclass
class BackfillResult:
    """What a backfill did, file by file and record by record."""

    files_found: int = 0
    files_loaded: int = 0
    passed_over: list[str] = field(default_factory=list)  # in the folders: not late reports
    skipped: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # one sentence per damaged file
    batches: list[BatchResult] = field(default_factory=list)
    rollup: RollupResult | None = None
    rollup_skipped: bool = False

    def total(self, name: str) -> int:
        return sum(getattr(b, name) for b in self.batches)

    def lines(self) -> list[str]:
        out = [f"files: {self.files_found} found, {self.files_loaded} loaded, "
               f"{len(self.skipped)} already loaded (skipped)"
               + (f", {len(self.unreadable)} unreadable" if self.unreadable else "")
               + (f", {len(self.damaged)} damaged (what could be read loaded, each whole file "
                  "kept as one quarantined record)" if self.damaged else ""),
               f"records: {self.total('records_read')} read, {self.total('upserted')} upserted, "
               f"{self.total('duplicates_or_stale')} duplicate/stale, "
               f"{self.total('quarantined')} quarantined"]
        if self.rollup is not None:
            out.append(self.rollup.line())
        elif self.rollup_skipped:
            out.append("rollups: not recomputed (loaded only); the next `rollup --changed` "
                       "recomputes the days that changed")
        elif not self.batches:
            out.append("rollups: nothing new loaded, no day to recompute")
        return out


def _groups(files: list[ReportFile], max_files: int, max_bytes: int
            ) -> Iterator[list[ReportFile]]:
    """Consecutive groups of at most `max_files` files and, unless one file is larger, at most
    `max_bytes` bytes."""
    group: list[ReportFile] = []
    size = 0
    for f in files:
        if group and (len(group) == max_files or size + f.size > max_bytes):
            yield group
            group, size = [], 0
        group.append(f)
        size += f.size
    if group:
        yield group


def backfill(spark, lake: Lake, paths: Iterable[str | Path], contract: Contract = CURRENT,
             files_per_batch: int = 32, bytes_per_batch: int = BYTES_PER_BATCH,
             rollup: bool = True, progress: bool | None = None,
             on_batch: Callable[[BatchResult], None] | None = None) -> BackfillResult:
    """Load late-report files or folders into the lake, then recompute the days that changed.

    Parameters:
        paths: files (.jsonl, .jsonl.gz, .json) and folders holding them (not recursive).
        files_per_batch, bytes_per_batch: the most new files, and bytes of them as stored
            (compressed for .gz), written together as one batch (one run id); a larger file
            is a batch of its own.
        rollup: recompute the rollups of the changed days afterwards (`rollup_changed`).
        progress: show a progress bar over the bytes to load, moved after each batch
            (default: only on a terminal).
    Raises BadArgumentError when a path does not exist or is not a late report.
    """
    from tqdm import tqdm

    if files_per_batch < 1:
        raise BadArgumentError(f"files per batch is {files_per_batch}; it must be at least 1")
    if bytes_per_batch < 1:
        raise BadArgumentError(f"bytes per batch is {bytes_per_batch}; it must be at least 1")
    result = BackfillResult()
    paths_found, result.passed_over = find_report_files(paths)
    result.files_found = len(paths_found)
    inspected: list[ReportFile] = []
    for path in paths_found:
        try:
            inspected.append(inspect_file(path))
        except OSError as exc:
            result.unreadable.append(f"{path}: {exc.strerror or exc}")
    loaded = already_loaded(spark, lake, [f.sha256 for f in inspected])
    new: dict[str, ReportFile] = {}
    for f in inspected:
        if f.sha256 in loaded or f.sha256 in new:
            result.skipped.append(f.path)
        else:
            new[f.sha256] = f
    result.damaged = [f"{f.path}: {f.damage}, and the whole file is kept in quarantine"
                      for f in new.values() if f.damage is not None]
    show = None if progress is None else not progress  # None: tqdm decides (a terminal or not)
    with tqdm(total=sum(f.size for f in new.values()), unit="B", unit_scale=True,
              desc="backfill", disable=show, leave=False) as bar:
        for group in _groups(list(new.values()), files_per_batch, bytes_per_batch):
            run_id = group_run_id(f.sha256 for f in group)
            source = str(group[0].path) + (f" and {len(group) - 1} more" if len(group) > 1
                                           else "")
            ctx = WriteContext.now(run_id=run_id, batch_id=0, kind="backfill", source=source)
            names = source_names(spark, group)
            raw = read_reports(spark, group, names)
            batch = write_batch(spark, lake, raw, ctx, contract)
            record_batch(spark, lake, batch, ctx, contract)
            record_loaded(spark, lake, group, run_id, _records_per_file(raw, names))
            result.batches.append(batch)
            result.files_loaded += len(group)
            if on_batch is not None:
                on_batch(batch)
            bar.update(sum(f.size for f in group))
    if rollup and result.batches:
        result.rollup = rollup_changed(spark, lake, contract=contract)
    result.rollup_skipped = not rollup and bool(result.batches)
    return result
