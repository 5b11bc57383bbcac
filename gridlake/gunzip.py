"""What of a gzip file can be trusted: the one gunzip rule of the stream and the backfill.

Hadoop's codec fails a whole task on a `.gz` cut short, a corrupt member or zero padding (which
`gzip` reads), and a streaming query that fails on a landing file fails again on every restart.
gridlake decompresses `.gz` files itself, with this module, wherever it reads them. The module
needs only the standard library: Spark ships `unpack` to executors by value.

Example:
    >>> import gzip
    >>> gunzip_prefix(gzip.compress(b"a\\nb\\n"))
    (b'a\\nb\\n', None)
"""

from __future__ import annotations

import re
import zlib

_NOT_ZERO = re.compile(rb"[^\0]")
_GZIP_MAGIC = b"\x1f\x8b"
NOT_GZIP = "it is not gzip data; nothing of it was loaded"
# Decompressed bytes kept of one file: one Spark value, held a few times over by the Python
# worker and the JVM. A file (or a decompression bomb) past it loads its first part only.
LIMIT = 512 << 20


def gunzip_prefix(content: bytes, keep: bool = True, chunk: int = 64 << 10, limit: int = LIMIT
                  ) -> tuple[bytes, str | None]:
    """What of a gzip file can be trusted (b"" unless `keep`), and what is wrong with the rest
    and what of it was kept (None: nothing is wrong).

    Every member of a multi-member file is read, with zero padding before, between and after
    members (`gzip` reads it after a member). A file cut short gives everything before the cut
    (deflate's output up to there is exact). Corruption that zlib detects inside a member gives
    only the members before it: where the damage starts cannot be told, so nothing of that
    member is trusted (corruption that decodes up to the end of the file cannot be told from a
    cut). Output past `limit` bytes is not decompressed: the first `limit` bytes are given. An
    empty file is an empty file.
    """
    view = memoryview(content)
    out: list[bytes] = []
    at, number, produced = 0, 0, 0
    while (padding_end := _NOT_ZERO.search(content, at)) is not None:
        at, number = padding_end.start(), number + 1
        member, trusted, begins = zlib.decompressobj(wbits=31), len(out), at
        try:
            while not member.eof and at < len(view):
                piece = view[at:at + chunk]
                data = member.decompress(piece, limit - produced + 1)
                produced += len(data)
                if keep:
                    out.append(data)
                at += len(piece) - len(member.unconsumed_tail) - len(member.unused_data)
                if produced > limit:
                    return b"".join(out)[:limit], (
                        f"it decompresses to more than {limit:,} bytes; the lines in its first "
                        f"{limit:,} bytes were loaded")
        except zlib.error:
            if number == 1 and bytes(view[begins:begins + 2]) != _GZIP_MAGIC:
                return b"", NOT_GZIP
            return b"".join(out[:trusted]), (
                f"its gzip member {number} is corrupt; "
                + ("the members before it were loaded" if number > 1 else "nothing of it was loaded"))
        if not member.eof:
            return b"".join(out), "its compressed data ends early; the lines before the cut were loaded"
    if number == 0 and content:  # zeros only
        return b"", NOT_GZIP
    return b"".join(out), None


def file_damage(path: str) -> str | None:
    """What `gunzip_prefix` finds wrong with the `.gz` file at `path`; None when nothing is, or
    when the file can no longer be read."""
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError:
        return None
    return gunzip_prefix(content, keep=False)[1]


def unpack(content: bytes | bytearray | None) -> tuple[bytes, str | None] | None:
    """A Spark UDF's body: `gunzip_prefix` of a file's bytes (null in, null out)."""
    return None if content is None else gunzip_prefix(bytes(content))
