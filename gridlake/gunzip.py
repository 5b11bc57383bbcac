"""What of a gzip file can be trusted: the one gunzip rule of the stream and the backfill.

Hadoop's codec fails a whole task on a `.gz` cut short, a corrupt member or zero padding (which
`gzip` reads), and a streaming query that fails on a landing file fails again on every restart.
gridlake decompresses `.gz` files itself, with this function, wherever it reads them.

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


def gunzip_prefix(content: bytes, keep: bool = True, chunk: int = 64 << 10
                  ) -> tuple[bytes, str | None]:
    """What of a gzip file can be trusted (b"" unless `keep`), and what is wrong with the rest
    and what of it was kept (None: nothing is wrong).

    Every member of a multi-member file is read, with the zero padding `gzip` allows between
    and after members. A file cut short gives everything before the cut (deflate's output up
    to there is exact). Corruption that zlib detects inside a member gives only the members
    before it: where the damage starts cannot be told, so nothing of that member is trusted
    (corruption that decodes up to the end of the file cannot be told from a cut).
    """
    view = memoryview(content)
    out: list[bytes] = []
    at, number = 0, 0
    while (padding_end := _NOT_ZERO.search(content, at)) is not None:
        at, number = padding_end.start(), number + 1
        member, trusted, begins = zlib.decompressobj(wbits=31), len(out), at
        try:
            while not member.eof and at < len(view):
                piece = view[at:at + chunk]
                data = member.decompress(piece)
                if keep:
                    out.append(data)
                at += len(piece) - len(member.unused_data)
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
