"""Files and folders in a landing folder that the stream never reads are named on stderr,
once each."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gridlake.errors import BadArgumentError
from gridlake.landing import MAX_FILE_BYTES
from streaming.query import UnreadFiles, unread_check_seconds, unread_sentence
from streaming.sources import FileSource, parse_source, unread_names
from tests.batch.expected import dumps, event
from tests.streaming.conftest import StreamProcess

TOO_LARGE = ("it is 536,870,913 bytes, more than the 536,870,912 that gridlake reads from one "
             "file (Spark holds a file as one value): split it into new files")


def test_unread_names_are_the_entries_that_are_neither_records_nor_hidden():
    names = ["a.jsonl", "b.jsonl.gz", "c.json", "d.jsonl.bz2", "e.csv", "f.jsonl.tmp",
             ".upload.jsonl", "_SUCCESS", "_x.jsonl", "g.JSONL", "jsonl", "day=2026-11-01/",
             "h.jsonl/", ".hidden/", "_spark_metadata/"]
    # h.jsonl/ matches the landing pattern: the record files inside it are read. Spark passes
    # over _x.jsonl, which a producer meant as records; _SUCCESS is a marker.
    assert unread_names(names) == ["_x.jsonl", "c.json", "d.jsonl.bz2", "day=2026-11-01/",
                                   "e.csv", "f.jsonl.tmp", "g.JSONL", "jsonl"]


def test_the_sentence_lists_a_few_names_counts_the_rest_and_points_json_to_backfill():
    assert unread_sentence("/landing", [f"r{i}.json" for i in range(7)]) == (
        "7 file(s) or folder(s) in /landing will not be read, because the stream reads only "
        "the .jsonl and .jsonl.gz files directly in it (or in a subfolder named like one): "
        "r0.json, r1.json, r2.json, r3.json, "
        "r4.json and 2 more (a CloudEvents batch array, .json, loads with gridlake backfill)")
    assert unread_sentence("/landing", ["old/"]) == (
        "1 file(s) or folder(s) in /landing will not be read, because the stream reads only "
        "the .jsonl and .jsonl.gz files directly in it (or in a subfolder named like one): old/")


def test_each_unread_entry_is_named_once_and_the_folder_is_listed_at_most_every_period(
        tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("ok.jsonl", "ok.jsonl.gz", "batch.json", ".part.jsonl", "_SUCCESS"):
        (landing / name).write_bytes(b"{}\n")
    (landing / "day=2026-11-01").mkdir()  # a folder: the stream does not read into it
    (landing / ".staging").mkdir()
    with (landing / "huge.jsonl.gz").open("wb") as huge:  # sparse: no disk used
        huge.truncate(MAX_FILE_BYTES + 1)
    now = [0.0]
    said: list[str] = []
    unread = UnreadFiles(FileSource(str(landing)), said.append, every=60, clock=lambda: now[0])

    unread.check()
    assert said == [
        f"2 file(s) or folder(s) in {landing} will not be read, because the stream reads only "
        "the .jsonl and .jsonl.gz files directly in it (or in a subfolder named like one): "
        "batch.json, day=2026-11-01/ (a "
        "CloudEvents batch array, .json, loads with gridlake backfill)",
        f"{landing / 'huge.jsonl.gz'} will not be read: {TOO_LARGE}"]

    (landing / "more.jsonl.zst").write_bytes(b"x")
    now[0] = 59.0
    unread.check()  # within the period: not listed again
    assert len(said) == 2

    now[0] = 60.0
    unread.check()  # listed again: only the new file is named
    assert said[2:] == [
        f"1 file(s) or folder(s) in {landing} will not be read, because the stream reads only "
        "the .jsonl and .jsonl.gz files directly in it (or in a subfolder named like one): "
        "more.jsonl.zst"]

    now[0] = 200.0
    unread.check()  # nothing new
    assert len(said) == 3

    (landing / "batch.json").unlink()  # gone, then back: named again
    now[0] = 300.0
    unread.check()
    (landing / "batch.json").write_bytes(b"[]")
    now[0] = 400.0
    unread.check()
    assert len(said) == 4 and said[3].endswith("named like one): batch.json (a CloudEvents "
                                               "batch array, .json, loads with gridlake backfill)")


def test_a_landing_folder_that_does_not_exist_yet_has_no_unread_files(tmp_path):
    assert FileSource(str(tmp_path / "not-yet")).unread_files() == ([], {})


def test_a_folder_that_cannot_be_listed_is_said_once_a_period_and_stops_nothing(tmp_path):
    landing = tmp_path / "landing"
    landing.write_text("a file where the folder should be")
    said: list[str] = []
    unread = UnreadFiles(FileSource(str(landing)), said.append, every=60, clock=lambda: 0.0)
    unread.check()
    unread.check()
    assert len(said) == 1
    assert said[0].startswith(f"could not look for unread files in {landing}: ")


@pytest.mark.parametrize("name", ["in[1]", "a{b}", "x*", "what?", "back\\slash"])
def test_a_landing_folder_whose_path_spark_would_misread_is_refused(tmp_path, name):
    (tmp_path / name).mkdir()
    expected = (f"source folder {str(tmp_path / name)!r} has one of the characters *?[]{{}}\\ "
                "in its path, with which Spark's streaming file source reads a file more than "
                "once: stream from a folder whose path has none of them")
    with pytest.raises(BadArgumentError) as refused:
        parse_source(f"files:{tmp_path / name}")
    assert str(refused.value) == expected
    with pytest.raises(BadArgumentError):
        FileSource(str(tmp_path / name))  # however the source is made
    assert isinstance(parse_source(f"files:{tmp_path}"), FileSource)


def test_the_period_comes_from_the_environment_or_is_refused_in_one_sentence(tmp_path):
    assert unread_check_seconds({}) == 60.0
    assert unread_check_seconds({"GRIDLAKE_UNREAD_CHECK_SECONDS": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(BadArgumentError, match="must be a number of seconds above 0"):
            unread_check_seconds({"GRIDLAKE_UNREAD_CHECK_SECONDS": bad})
    # Before Spark starts and before the lake is touched.
    run = subprocess.run(
        [sys.executable, "-m", "gridlake.cli", "stream", "--source", f"files:{tmp_path}",
         "--lake", str(tmp_path / "lake"), "--available-now"],
        env={**os.environ, "GRIDLAKE_UNREAD_CHECK_SECONDS": "soon"}, capture_output=True,
        text=True, timeout=120)
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == ("gridlake stream: GRIDLAKE_UNREAD_CHECK_SECONDS is 'soon'; it must be "
                          "a number of seconds above 0\n")
    assert not (tmp_path / "lake").exists()


def test_a_running_stream_with_no_new_records_names_what_lands_beside_them(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.jsonl").write_bytes(
        dumps(event("D1", "S1", "meter", "2026-11-01T00:15:00Z", 1, 5.0)) + b"\n")
    stream = StreamProcess(f"files:{landing}", tmp_path / "lake", "--trigger", "1",
                           GRIDLAKE_UNREAD_CHECK_SECONDS="1")
    try:
        stream.wait_for(1)
        (landing / "late.json").write_bytes(b"[]")  # no record file comes: no micro-batch
        line = stream.wait_for_line("gridlake stream: 1 file(s) or folder(s)", timeout=120)
        assert line.rstrip("\n") == (
            f"gridlake stream: 1 file(s) or folder(s) in {landing} will not be read, because "
            "the stream reads only the .jsonl and .jsonl.gz files directly in it (or in a subfolder named like one): "
            "late.json "
            "(a CloudEvents batch array, .json, loads with gridlake backfill)")
    finally:
        assert stream.stop() == 0, stream.tail()
