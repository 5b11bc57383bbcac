"""Which files of a landing folder hold records, and how they are named to Spark and to people
(`few`: a few names of a list, in a sentence).

One set of rules for the stream's landing folder (`streaming.sources`), the late-report
backfill (`batch.late_reports`) and the producer that lists record files
(`streaming.produce`). Plain Python: no Spark here.

Example:
    >>> landing_pattern("/data/in[1]")
    '/data/in\\\\[1\\\\]/*.{jsonl,jsonl.gz}'
    >>> few(["a", "b", "c"], shown=2)
    'a, b and 1 more'
"""

from __future__ import annotations

import re

from gridlake.gunzip import LIMIT

# JSON-lines record files, plain or gzipped (DESIGN.md's wire contract).
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz")
# The same rule as a Hadoop glob, for Spark's file sources.
LANDING_GLOB = "*.{" + ",".join(suffix.lstrip(".") for suffix in RECORD_SUFFIXES) + "}"
# Names Spark's file sources pass over: an upload in progress (`.name`), a marker (`_SUCCESS`).
HIDDEN = (".", "_")
# The most bytes read from one file: Spark holds a file, and the text split from it, as one
# value each (under 2 GiB, and in memory at once), so a file is bounded as gunzip's output is.
MAX_FILE_BYTES = LIMIT
GLOB_CHARACTERS = re.compile(r"([\\*?\[\]{}])")


def too_large_sentence(size: int) -> str:
    """Why a file of `size` bytes is not read, as the end of a sentence about it."""
    return (f"it is {size:,} bytes, more than the {MAX_FILE_BYTES:,} that gridlake reads from "
            "one file (Spark holds a file as one value): split it into new files")


def glob_escaped(path: str) -> str:
    """`path` for a Spark file source, which reads `*?[]{}` as Hadoop glob patterns: each of
    them (and the backslash) escaped, so a folder named `in[1]` is that folder."""
    return GLOB_CHARACTERS.sub(r"\\\1", path)


def landing_pattern(directory: str) -> str:
    """The Spark path of a landing folder's record files: those directly in it.

    A pattern of files, not the folder: given a folder, Spark would also read subfolders named
    like partitions (`day=2026-11-01/`), leave the folder's own files unread beside them, and
    fail on a mix of such layouts. A subfolder named like a record file (`x.jsonl/`) matches
    the pattern: readers take the record files inside it, at any depth, and no partitions
    (`streaming.sources`).
    """
    return f"{glob_escaped(directory.rstrip('/'))}/{LANDING_GLOB}"


def few(names: list[str], shown: int = 5) -> str:
    """`a, b, c and 4 more`: the first `shown` names, and how many others."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more"
                                       if len(names) > shown else "")
