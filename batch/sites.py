"""The site registry (`sites.csv`: site_id, timezone, latitude, longitude) as `reference/sites`.

Site rollups follow each site's local calendar day, so the registry is loaded into the lake,
checked first: every site id follows the contract's id rule, every time zone is an IANA name
this machine knows, no site appears twice. A load replaces the whole table (the file is the
registry, not a delta of it); earlier versions stay reachable by time travel.

Example:
    >>> load_sites(spark, lake, Path("fleet/sites.csv"))                     # doctest: +SKIP
    12
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gridlake.errors import BadArgumentError
from gridlake.lake import Lake
from gridlake.retry import guarded_write
from shared_schemas import CURRENT, Contract
from shared_schemas.tables import reference_sites

REQUIRED_COLUMNS = ("site_id", "timezone")


def _float_or_none(text: str | None, what: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise BadArgumentError(f"{what} is {text!r}, not a number") from None


def parse_sites(text: str, source: str, contract: Contract = CURRENT) -> list[dict]:
    """The rows of a sites CSV, checked; raises BadArgumentError naming the first problem."""
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise BadArgumentError(
            f"{source} has columns {reader.fieldnames or []}; it needs {list(REQUIRED_COLUMNS)} "
            f"(latitude and longitude optional)")
    pattern = re.compile(contract.field("site_id").pattern or ".*")
    rows, seen = [], set()
    for number, record in enumerate(reader, start=2):
        where = f"{source} line {number}"
        site_id, zone = (record.get("site_id") or "").strip(), (record.get("timezone") or "").strip()
        if not pattern.fullmatch(site_id):
            raise BadArgumentError(f"{where}: site id {site_id!r} is not a valid id")
        if site_id in seen:
            raise BadArgumentError(f"{where}: site {site_id} appears more than once")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise BadArgumentError(
                f"{where}: {zone!r} is not an IANA time zone (like Europe/Berlin)") from None
        seen.add(site_id)
        rows.append({"site_id": site_id, "timezone": zone,
                     "latitude": _float_or_none(record.get("latitude"), f"{where}: latitude"),
                     "longitude": _float_or_none(record.get("longitude"), f"{where}: longitude")})
    if not rows:
        # A load replaces the registry: an empty file would drop every site's rollups.
        raise BadArgumentError(f"{source} lists no site; a registry needs one row per site")
    return rows


def load_sites(spark, lake: Lake, path: Path, contract: Contract = CURRENT) -> int:
    """Replace `reference/sites` with the registry in `path`; returns the number of sites."""
    if not path.is_file():
        raise BadArgumentError(f"site registry {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadArgumentError(f"site registry {str(path)!r} is not UTF-8 text (byte "
                               f"{error.start}); save the CSV as UTF-8") from None
    rows = parse_sites(text, str(path), contract)
    spec = reference_sites()
    loaded_at = dt.datetime.now(dt.UTC)
    frame = spark.createDataFrame(
        [{**r, "source_file": str(path.resolve()), "loaded_at": loaded_at} for r in rows],
        spec.schema)
    guarded_write(lambda: frame.write.format("delta").mode("overwrite").save(lake.path(spec)),
                  "site registry load")
    return len(rows)
