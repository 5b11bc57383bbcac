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


def lake_root(text: str) -> str:
    """A lake root as given: a folder or URL, never empty (an unset shell variable)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the lake is empty (an unset shell variable?); give its folder or s3a:// URL")
    return text


def add_lake_argument(parser: argparse.ArgumentParser,
                      *actions: argparse.ArgumentParser) -> None:
    """`--lake DIR`, required unless the environment names the lake (LAKE_VARIABLE).

    A command with actions (`quarantine list`) takes it after the action too: `actions` are
    their parsers. Whether it was given anywhere is checked by `missing_lake`.
    """
    default = os.environ.get(LAKE_VARIABLE) or None
    text = f"the lake root (a folder or s3a:// URL); default ${LAKE_VARIABLE} when set"
    parser.add_argument("--lake", type=lake_root, required=default is None and not actions,
                        default=default, metavar="DIR", help=text)
    for action in actions:
        # SUPPRESS: an action that is not given --lake keeps the value parsed before it.
        action.add_argument("--lake", type=lake_root, default=argparse.SUPPRESS, metavar="DIR",
                            help=text)


def missing_lake(args: argparse.Namespace) -> str | None:
    """The sentence for a command that takes `--lake` and got none (nor LAKE_VARIABLE)."""
    if "lake" in vars(args) and args.lake is None:
        return f"--lake is required (or set ${LAKE_VARIABLE})"
    return None
