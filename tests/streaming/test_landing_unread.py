"""Files and folders in a landing folder that the stream never reads are named on stderr,
once each."""

from __future__ import annotations

import pytest

from gridlake.errors import BadArgumentError
from streaming.query import UnreadFiles, unread_sentence
from streaming.sources import FileSource, parse_source, unread_names


def test_unread_names_are_the_files_that_are_neither_records_nor_hidden():
    names = ["a.jsonl", "b.jsonl.gz", "c.json", "d.jsonl.bz2", "e.csv", "f.jsonl.tmp",
             ".upload.jsonl", "_SUCCESS", "g.JSONL", "jsonl", "day=2026-11-01/", "h.jsonl/",
             ".hidden/", "_spark_metadata/"]
    assert unread_names(names) == ["c.json", "d.jsonl.bz2", "day=2026-11-01/", "e.csv",
                                   "f.jsonl.tmp", "g.JSONL", "h.jsonl/", "jsonl"]


def test_the_sentence_lists_a_few_names_and_counts_the_rest():
    names = [f"r{i}.json" for i in range(7)]
    text = unread_sentence("/landing", names)
    assert text.startswith("7 file(s) or folder(s) in /landing will not be read, because the "
                           "stream reads only the .jsonl and .jsonl.gz files directly in it: "
                           "r0.json, r1.json, r2.json, r3.json, r4.json and 2 more")
    assert "\n" not in text


def test_each_unread_file_is_named_once_and_the_folder_is_listed_at_most_every_period(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("ok.jsonl", "ok.jsonl.gz", "batch.json", ".part.jsonl", "_SUCCESS"):
        (landing / name).write_bytes(b"{}\n")
    (landing / "day=2026-11-01").mkdir()  # a folder: the stream does not read into it
    (landing / ".staging").mkdir()
    with (landing / "huge.jsonl.gz").open("wb") as huge:  # sparse: no disk used
        huge.truncate(2**31)
    now = [0.0]
    said: list[str] = []
    unread = UnreadFiles(FileSource(str(landing)), said.append, every=60, clock=lambda: now[0])

    unread.check()
    assert said == [unread_sentence(str(landing), ["batch.json", "day=2026-11-01/"]),
                    f"{landing / 'huge.jsonl.gz'} will not be read: it is 2,147,483,648 bytes, "
                    "more than the 2,147,483,647 that Spark holds as one value: split it into "
                    "smaller files"]

    (landing / "more.jsonl.zst").write_bytes(b"x")
    now[0] = 59.0
    unread.check()  # within the period: not listed again
    assert len(said) == 2

    now[0] = 60.0
    unread.check()  # listed again: only the new file is named
    assert said[2:] == [unread_sentence(str(landing), ["more.jsonl.zst"])]

    now[0] = 200.0
    unread.check()  # nothing new
    assert len(said) == 3


def test_a_landing_folder_that_does_not_exist_yet_has_no_unread_files(tmp_path):
    assert FileSource(str(tmp_path / "not-yet")).unread_files() == ([], {})


@pytest.mark.parametrize("name", ["in[1]", "a{b}", "x*", "what?", "back\\slash"])
def test_a_landing_folder_whose_path_spark_would_read_as_a_pattern_is_refused(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(BadArgumentError, match=r"^source folder .* has one of the characters "
                       r"\*\?\[\]\{\}\\ in its path"):
        parse_source(f"files:{tmp_path / name}")
    assert isinstance(parse_source(f"files:{tmp_path}"), FileSource)


def test_a_folder_that_cannot_be_listed_is_said_once_a_period_and_stops_nothing(tmp_path):
    landing = tmp_path / "landing"
    landing.write_text("a file where the folder should be")
    said: list[str] = []
    unread = UnreadFiles(FileSource(str(landing)), said.append, every=60, clock=lambda: 0.0)
    unread.check()
    unread.check()
    assert len(said) == 1
    assert said[0].startswith(f"could not look for unread files in {landing}: ")
