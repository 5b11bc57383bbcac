"""Backfill of late reports: every file format, the upsert rule, idempotency, changed days only."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import zlib
from pathlib import Path
from zoneinfo import ZoneInfo

from pyspark.sql import functions as F

from batch.late_reports import ReportFile, _groups, json_batch_elements
from gridlake.gunzip import gunzip_prefix
from gridlake.landing import MAX_FILE_BYTES
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import rows_by, silver_winners, table, versions, winners

SITES = {"S1": "Europe/Berlin", "S2": "America/New_York"}


def write_reports(folder):
    """Five files around the 2026 DST ends (Berlin 10-25, New York 11-01), with every anomaly."""
    folder.mkdir()
    d1 = X.hourly("D1", "S1", "battery", "2026-10-24T00:00:00+00:00", 72, seq0=10, soc=True)
    d2 = X.hourly("D2", "S1", "solar", "2026-10-24T00:00:00+00:00", 72, seq0=500)
    d3 = X.hourly("D3", "S2", "meter", "2026-10-31T00:00:00+00:00", 72, seq0=7)
    bad_power = X.event("D1", "S1", "battery", "2026-10-26T12:30:00Z", 1, 2e6, soc=50.0)
    (folder / "_a.jsonl").write_bytes(  # a name Spark passes over, given or not
        b"\n".join([*map(X.dumps, d1[:40]), b"not json at all", b"", X.dumps(bad_power),
                    *map(X.dumps, d1[40:])]) + b"\n")
    (folder / "b [1]{x}*?.jsonl.gz").write_bytes(  # glob characters: still a plain name
        gzip.compress(b"\n".join(map(X.dumps, d2)) + b"\n"))
    (folder / "c.json").write_bytes(b"[\n" + b",\n".join(map(X.dumps, d3)) + b"\n]\n")
    (folder / "d.json").write_bytes(b'{"specversion": "1.0", "id": ')
    correction = X.event("D1", "S1", "battery", d1[29]["time"], 1000, -321.5, soc=12.0)
    stale = X.event("D1", "S1", "battery", d1[30]["time"], 0, 999.0, soc=99.0)
    conflict_wins = {**json.loads(X.dumps(d2[10])), "id": "zzz-wins"}
    conflict_wins["data"]["power_w"] = -4321.0
    conflict_loses = {**json.loads(X.dumps(d2[11])), "id": "0-loses"}
    conflict_loses["data"]["power_w"] = 1.0
    (folder / "e:x.jsonl").write_bytes(b"\n".join([  # a name Hadoop cannot open
        X.dumps(d1[5]),  # a byte-identical duplicate
        X.dumps(conflict_wins), X.dumps(stale), X.dumps(correction), X.dumps(conflict_loses),
        '{"specversion":"1.0","status":"Störung"}'.encode("latin-1"),
    ]) + b"\n")
    return sorted(folder.iterdir())


def gold_devices(spark, lake):
    return rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day")


def gold_sites(spark, lake):
    return rows_by(spark, lake, "gold/daily_site_rollups", "site_id", "local_day")


def replaced_days_by_commit(spark, lake, path: str, since: int) -> list[set[str]]:
    """Per commit of `path` after version `since` (oldest first), the days its replaceWhere
    predicate names, as Delta's history records them."""
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, lake.path(path)).history().where(
        F.col("version") > since)
    return [set(re.findall(r"\d{4}-\d{2}-\d{2}", r["operationParameters"]["predicate"]))
            for r in history.orderBy("version").collect()]


def local_days_of_utc_day(day: str) -> set[str]:
    """Every local calendar day of SITES' zones that shares an instant with a UTC day."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    instants = (start, start + dt.timedelta(days=1, microseconds=-1))
    return {str(t.astimezone(ZoneInfo(zone)).date()) for zone in SITES.values() for t in instants}


def check_gold(spark, lake, truth):
    X.same(gold_devices(spark, lake), X.device_rollups(truth), "daily device rollups")
    X.same(gold_sites(spark, lake), X.site_rollups(truth, SITES), "daily site rollups")


def test_backfill_loads_every_format_once_and_recomputes_only_touched_days(
        spark, lake, cli, tmp_path):
    files = write_reports(tmp_path / "late")
    sites = tmp_path / "sites.csv"
    sites.write_text("site_id,timezone,latitude,longitude\n"
                     "S1,Europe/Berlin,52.5,13.4\nS2,America/New_York,40.7,-74.0\n")
    records = list(oracle.read_records(files))
    truth, invalid = oracle.silver_truth(records, X.now())

    # Not late reports: named on stderr, not loaded; a hidden upload in progress is not named.
    (tmp_path / "late" / "notes.txt").write_text("readme")
    (tmp_path / "late" / "2026-10").mkdir()
    (tmp_path / "late" / ".upload.jsonl").write_bytes(b"{}\n")
    status, out, err = cli("backfill", "--lake", lake.root, "--sites", sites, tmp_path / "late")
    assert (status, err) == (0, (
        "gridlake backfill: 2 file(s) or folder(s) in the folders given are not late reports "
        "(the .jsonl, .jsonl.gz, .json files directly in them) and are not loaded: "
        f"{tmp_path / 'late' / '2026-10'}/, {tmp_path / 'late' / 'notes.txt'}\n"))
    assert "5 found, 5 loaded" in out
    assert (f"{len(records)} read, {len(truth)} upserted, "
            f"{len(records) - len(invalid) - len(truth)} duplicate/stale, "
            f"{len(invalid)} quarantined") in out
    assert silver_winners(spark, lake) == winners(truth)
    check_gold(spark, lake, truth)
    site_days = gold_sites(spark, lake)
    assert site_days[("S1", dt.date(2026, 10, 25))]["local_day_hours"] == 25.0
    assert site_days[("S1", dt.date(2026, 10, 25))]["samples"] == 2 * 25
    assert site_days[("S2", dt.date(2026, 11, 1))]["samples"] == 25
    # A CloudEvents batch: one record per element, numbered from 1; a non-array: one record.
    bronze = table(spark, lake, "bronze/telemetry").collect()
    lines = {(r["source_file"].rsplit("/", 1)[-1], r["source_line"]) for r in bronze}
    assert {("c.json", 1), ("c.json", 72), ("d.json", None)} <= lines
    # Record ids as the stream gives them, whichever reader split the file.
    assert all(r["record_id"] == f"file:{r['source_file']}" + (
        "" if r["source_line"] is None else f"#{r['source_line']}") for r in bronze)
    loaded = rows_by(spark, lake, "_gridlake/loaded_files", "path")
    assert {p.rsplit("/", 1)[-1]: r["records"] for (p,), r in loaded.items()} == {
        "_a.jsonl": 74, "b [1]{x}*?.jsonl.gz": 72, "c.json": 72, "d.json": 1, "e:x.jsonl": 6}

    silver_before = versions(spark, lake, "silver/readings")
    gold_before = gold_devices(spark, lake)
    status, out, _ = cli("backfill", "--lake", lake.root, *files)
    assert status == 0 and "0 loaded, 5 already loaded (skipped)" in out
    assert versions(spark, lake, "silver/readings") == silver_before

    fix = X.event("D3", "S2", "meter", "2026-11-01T12:00:00Z", 5000, 777.5)
    (tmp_path / "fix.jsonl").write_bytes(X.dumps(fix) + b"\n")
    status, out, _ = cli("backfill", "--lake", lake.root, tmp_path / "fix.jsonl")
    assert status == 0 and "1 UTC day(s) (2026-11-01)" in out
    truth, _ = oracle.silver_truth([*records, *oracle.read_records([tmp_path / "fix.jsonl"])],
                                   X.now())
    assert silver_winners(spark, lake) == winners(truth)
    check_gold(spark, lake, truth)
    after = gold_devices(spark, lake)
    rewritten = {key for key in after if after[key]["run_id"] != gold_before[key]["run_id"]}
    assert rewritten == {("D3", dt.date(2026, 11, 1))}
    # Local days that overlap UTC 2026-11-01 in some site's zone (Berlin's reach 11-02).
    site_runs = {key for key, r in gold_sites(spark, lake).items()
                 if r["run_id"] == after[("D3", dt.date(2026, 11, 1))]["run_id"]}
    assert site_runs == {("S2", dt.date(2026, 10, 31) + dt.timedelta(days=i)) for i in range(3)}

    gold_version = versions(spark, lake, "gold/daily_device_rollups")
    status, out, _ = cli("rollup", "--lake", lake.root, "--changed")
    assert status == 0 and "no day changed" in out
    assert versions(spark, lake, "gold/daily_device_rollups") == gold_version

    # A report loaded without its rollup, then `rollup --changed`: the Delta history of each
    # gold table shows one new commit, replacing only the days that report touched.
    late = X.event("D2", "S1", "solar", "2026-10-25T23:30:00Z", 6000, 123.25)
    (tmp_path / "late.jsonl").write_bytes(X.dumps(late) + b"\n")
    gold = {"gold/daily_device_rollups": versions(spark, lake, "gold/daily_device_rollups"),
            "gold/daily_site_rollups": versions(spark, lake, "gold/daily_site_rollups")}
    status, out, _ = cli("backfill", "--lake", lake.root, "--no-rollup", tmp_path / "late.jsonl")
    assert status == 0 and "rollups: not recomputed (loaded only)" in out
    assert {path: versions(spark, lake, path) for path in gold} == gold
    status, out, _ = cli("rollup", "--lake", lake.root, "--changed")
    assert status == 0
    devices, sites_ = (replaced_days_by_commit(spark, lake, path, since=before)
                       for path, before in gold.items())
    assert devices == [{"2026-10-25"}]
    # Site days: those sharing an instant with the UTC day, at least Berlin's local day of
    # 23:30 UTC on Oct 25 (after the DST end, UTC+1): Oct 26.
    assert len(sites_) == 1 and {"2026-10-26"} <= sites_[0] <= local_days_of_utc_day("2026-10-25")
    truth, _ = oracle.silver_truth(
        [*records, *oracle.read_records([tmp_path / "fix.jsonl", tmp_path / "late.jsonl"])],
        X.now())
    check_gold(spark, lake, truth)


def test_a_json_batch_splits_into_the_exact_bytes_of_each_element():
    content = (b'[\n  {"id": "a", "data": {"s": "],[", "n": [1, 2]}},\n'
               b'  {"id":"b"} , 7\n]\n')
    assert json_batch_elements(content) == (
        [b'{"id": "a", "data": {"s": "],[", "n": [1, 2]}}', b'{"id":"b"}', b"7"], True)
    assert json_batch_elements(b" [ ] ") == ([], True)
    a = b'{"id": "a"}'
    for broken, before in ((b'[{"id": "a"}', [a]), (b'[{"id": "a"},]', [a]), (b"[1] [2]", [b"1"]),
                           (b'[{"id": "a"}, {"id": "b", "da', [a]), (b"[", [])):
        assert json_batch_elements(broken) == (before, False), broken
    # Bytes that stop being UTF-8 (a cut inside a character) end the array there.
    assert json_batch_elements('[{"n": "Zürich"}, {"n": "Zürich"}]'.encode()[:28]) == (
        [b'{"n": "Z\xc3\xbcrich"}'], False)
    assert json_batch_elements(b"[" * 200_000) == ([], False)  # nested past the recursion limit
    assert json_batch_elements(b"[" + b"1" * 5000 + b", 2]") == ([b"1" * 5000, b"2"], True)
    assert json_batch_elements(b'[{"a": 1}, 12') == ([b'{"a": 1}'], False)  # 12 may be cut
    for not_an_array in (b'{"id": "a"}', b"\xff[]", b""):
        assert json_batch_elements(not_an_array) is None, not_an_array


def test_gunzip_prefix_keeps_what_decompresses_before_the_damage():
    text = b"".join(b"line %d of a late report\n" % i for i in range(5000))
    packed = gzip.compress(text)
    second = gzip.compress(b"second member\n")
    assert gunzip_prefix(packed) == (text, None)
    assert gunzip_prefix(packed + second) == (text + b"second member\n", None)
    # Zero padding between or after members, as gzip itself reads it (Hadoop's codec does not).
    for padded in (packed + b"\0" * 3 + second, packed + second + b"\0" * 8):
        assert gunzip_prefix(padded) == (gzip.decompress(padded), None)
        assert gunzip_prefix(padded, keep=False) == (b"", None)
    assert gunzip_prefix(b"\0" * 10) == (b"", "it is not gzip data; nothing of it was loaded")
    cut, why = gunzip_prefix(packed[: len(packed) // 2])
    assert why == "its compressed data ends early; the lines before the cut were loaded"
    assert 0 < len(cut) < len(text) and text.startswith(cut)
    # Corruption inside a member: only the members before it are trusted.
    first = gzip.compress(b"first member\n")
    corrupt = bytearray(packed)
    corrupt[len(packed) // 2: len(packed) // 2 + 16] = b"U" * 16
    bad_crc = bytearray(packed)
    bad_crc[-6] ^= 1
    for damaged in (corrupt, bad_crc):
        assert gunzip_prefix(first + bytes(damaged), chunk=64) == (
            b"first member\n", "its gzip member 2 is corrupt; the members before it were loaded")
        assert gunzip_prefix(bytes(damaged), chunk=64) == (
            b"", "its gzip member 1 is corrupt; nothing of it was loaded")
        assert gunzip_prefix(bytes(damaged), keep=False) == (
            b"", "its gzip member 1 is corrupt; nothing of it was loaded")
    assert gunzip_prefix(b"not gzip at all") == (
        b"", "it is not gzip data; nothing of it was loaded")
    assert gunzip_prefix(first + b"trailing text") == (
        b"first member\n", "its gzip member 2 is corrupt; the members before it were loaded")
    # Past the limit (a decompression bomb, or one huge file): its first `limit` bytes only.
    bomb = gzip.compress(b"x\n" * 100_000) * 2
    for chunk in (7, 64 << 10):
        assert gunzip_prefix(bomb, chunk=chunk, limit=1001) == (b"x\n" * 500 + b"x", (
            "it decompresses to more than 1,001 bytes; the lines in its first 1,001 bytes "
            "were loaded"))
        assert gunzip_prefix(bomb, chunk=chunk, limit=400_000) == (b"x\n" * 200_000, None)
    # Many small members (a device that flushes often), the last one's trailer cut off.
    many = b"".join(gzip.compress(b"%d\n" % i, mtime=0) for i in range(20000))
    assert gunzip_prefix(many[:-3]) == (
        b"".join(b"%d\n" % i for i in range(20000)),
        "its compressed data ends early; the lines before the cut were loaded")


def test_backfill_batches_are_bounded_by_files_and_bytes():
    files = [ReportFile(Path(f"/r/{i}.jsonl"), "lines", str(i), size)
             for i, size in enumerate([10, 10, 10, 500, 10, 10])]
    groups = [[int(f.sha256) for f in g] for g in _groups(files, max_files=2, max_bytes=100)]
    assert groups == [[0, 1], [2], [3], [4, 5]]
    assert [len(g) for g in _groups(files, max_files=32, max_bytes=25)] == [2, 1, 1, 2]


def test_damaged_reports_load_what_can_be_read_and_keep_the_whole_file(
        spark, lake, cli, tmp_path):
    folder = tmp_path / "late"
    folder.mkdir()
    d1 = X.hourly("D1", "S1", "battery", "2026-10-24T00:00:00+00:00", 200, seq0=10, soc=True)
    d2 = X.hourly("D2", "S1", "solar", "2026-10-24T00:00:00+00:00", 30, seq0=500)
    text = b"".join(X.dumps(e) + b"\n" for e in d1)
    packed = gzip.compress(text)
    cut_gz = packed[: len(packed) * 2 // 3]
    (folder / "cut.jsonl.gz").write_bytes(cut_gz)
    # The array breaks off inside element 21.
    array = b"[\n" + b",\n".join(map(X.dumps, d2)) + b"\n]\n"
    cut_array = array[: array.index(X.dumps(d2[20])) + 25]
    (folder / "cut.json").write_bytes(cut_array)
    # Not damaged: two members with zero padding after each, which Hadoop's codec refuses.
    d3 = X.hourly("D3", "S2", "meter", "2026-10-24T00:00:00+00:00", 40, seq0=7)
    halves = [b"".join(X.dumps(e) + b"\n" for e in part) for part in (d3[:25], d3[25:])]
    (folder / "padded.jsonl.gz").write_bytes(
        b"".join(gzip.compress(half) + b"\0" * 512 for half in halves))
    # Larger than gridlake reads from one file (sparse: no disk used): named, the rest loads.
    for name in ("huge.jsonl", "huge.json"):
        with (folder / name).open("wb") as huge:
            huge.truncate(MAX_FILE_BYTES + 1)

    # Independently: what zlib gives back in one call, split on newlines; whole elements.
    recovered = zlib.decompressobj(wbits=31).decompress(cut_gz)
    gz_lines = recovered.split(b"\n")
    assert 0 < len(gz_lines) - 1 < len(d1)
    records = [oracle.Record(str(folder / "cut.jsonl.gz"), i, line)
               for i, line in enumerate(gz_lines, start=1) if line.strip()]
    records += [oracle.Record(str(folder / "cut.json"), i, X.dumps(e))
                for i, e in enumerate(d2[:20], start=1)]
    records += [oracle.Record(str(folder / "padded.jsonl.gz"), i, X.dumps(e))
                for i, e in enumerate(d3, start=1)]
    truth, invalid = oracle.silver_truth(records, X.now())

    status, out, err = cli("backfill", "--lake", lake.root, folder)
    assert status == 1
    assert "5 found, 3 loaded, 0 already loaded (skipped), 2 unreadable, 2 damaged" in out
    assert err.splitlines() == [
        f"gridlake backfill: {folder / 'cut.json'}: its JSON array breaks off after element "
        "20; the elements before the break were loaded, and the whole file is kept in quarantine",
        f"gridlake backfill: {folder / 'cut.jsonl.gz'}: its compressed data ends early; the "
        "lines before the cut were loaded, and the whole file is kept in quarantine",
        *(f"gridlake backfill: could not read {folder / name}: it is 536,870,913 bytes, more "
          "than the 536,870,912 that gridlake reads from one file (Spark holds a file as one "
          "value): split it into new files" for name in ("huge.json", "huge.jsonl"))]
    assert silver_winners(spark, lake) == winners(truth)
    # Quarantine: the cut line of the .gz (if the cut fell inside one), and each whole file.
    quarantined = {(r["source_file"].rsplit("/", 1)[-1], r["source_line"]): bytes(r["payload"])
                   for r in table(spark, lake, "quarantine/telemetry").collect()}
    expected = {("cut.jsonl.gz", None): cut_gz, ("cut.json", None): cut_array}
    expected.update({(Path(r.path).name, r.line): r.payload for r in invalid})
    assert quarantined == expected
    bronze = table(spark, lake, "bronze/telemetry").count()
    assert bronze == len(records) + 2


def test_bad_arguments_exit_1_with_one_sentence(cli, tmp_path):
    for argv in (("backfill", "--lake", tmp_path / "lake", tmp_path / "nowhere"),
                 ("rollup", "--lake", tmp_path / "lake", "--from", "2026-11-02",
                  "--to", "2026-11-01"),
                 ("rollup", "--lake", tmp_path / "lake"),
                 ("reprocess", "--lake", tmp_path / "lake", "--from", "2026-11-02",
                  "--to", "2026-11-01")):
        status, out, err = cli(*argv)
        assert (status, out) == (1, ""), argv
        assert err.count("\n") == 1 and err.startswith(f"gridlake {argv[0]}: "), err
    assert "nowhere' does not exist" in cli(
        "backfill", "--lake", tmp_path / "lake", tmp_path / "nowhere")[2]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a report")
    status, out, err = cli("backfill", "--lake", tmp_path / "lake", tmp_path / "empty")
    assert (status, out, err.count("\n")) == (1, "", 1)
    assert "no late reports (.jsonl, .jsonl.gz, .json files) in" in err
    assert f", only {tmp_path / 'empty' / 'notes.txt'}; " in err
    assert err.rstrip().endswith("nothing to load")
    assert not (tmp_path / "lake").exists()
