"""Argument types shared by the commands: each rejects bad input with one clear sentence."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
from pathlib import Path

from gridlake.lake import LAKE_VARIABLE


def date_arg(text: str) -> dt.date:
    """A calendar date written YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD") from None


def existing_path(text: str) -> Path:
    """A file or folder that exists."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist")
    return path


def _positive(text: str, parse, noun: str):
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def positive_int(text: str) -> int:
    return _positive(text, int, "a whole number")


def positive_float(text: str) -> float:
    return _positive(text, float, "a number")


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction between 0 and 1")
    return value


def add_lake_argument(parser: argparse.ArgumentParser) -> None:
    """`--lake DIR`, required unless the environment names the lake (LAKE_VARIABLE)."""
    default = os.environ.get(LAKE_VARIABLE) or None
    parser.add_argument(
        "--lake", required=default is None, default=default, metavar="DIR",
        help=f"the lake root (a folder or s3a:// URL); default ${LAKE_VARIABLE} when set",
    )
