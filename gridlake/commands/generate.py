"""`gridlake generate`: write a deterministic synthetic fleet (stream, late reports, registry).

Example:
    $ gridlake generate --out /tmp/fleet --devices 50 --days 3 --seed 1 --gzip-late
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from gridlake.commands._args import date_arg, fraction, positive_int
from gridlake.generator import GenerateOptions, write_fleet


def register(subparsers: argparse._SubParsersAction) -> None:
    d = GenerateOptions()
    parser = subparsers.add_parser(
        "generate", help="write a synthetic fleet with late, duplicate and corrupt records",
        description="Write a synthetic energy-IoT fleet to a folder: stream/ (CloudEvents JSON "
                    "lines), late/ (one report per device outage), sites.csv, devices.csv and "
                    "manifest.json. The same options and seed always give byte-identical files.",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="a new, empty or earlier-generated folder")
    parser.add_argument("--devices", type=positive_int, default=d.devices, metavar="N",
                        help="number of devices (default %(default)s)")
    parser.add_argument("--days", type=positive_int, default=d.days, metavar="D",
                        help="days of readings (default %(default)s)")
    parser.add_argument("--start", type=date_arg, default=d.start, metavar="YYYY-MM-DD",
                        help="first day; readings start at its UTC midnight (default %(default)s)")
    parser.add_argument("--interval-minutes", type=positive_int, default=d.interval_minutes,
                        metavar="M", help="minutes between readings, 1-1440 (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, metavar="S",
                        help="random seed (default %(default)s)")
    parser.add_argument("--stream-files", type=positive_int, default=d.stream_files, metavar="K",
                        help="stream files, split by delivery time (default %(default)s)")
    for name, what in (("duplicates", "valid readings delivered twice"),
                       ("corrections", "valid readings re-sent later with a higher seq"),
                       ("conflicts", "valid readings re-sent with the same seq and other values"),
                       ("late_devices", "devices that go offline and send a late report"),
                       ("corrupt", "lines that break a contract rule")):
        parser.add_argument(f"--{name.replace('_', '-')}", type=fraction, default=getattr(d, name),
                            metavar="F", help=f"fraction of {what} (default %(default)s)")
    parser.add_argument("--gzip-late", action="store_true",
                        help="gzip the .jsonl late reports (.jsonl.gz)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = GenerateOptions(
        devices=args.devices, days=args.days, start=args.start,
        interval_minutes=args.interval_minutes, seed=args.seed, stream_files=args.stream_files,
        duplicates=args.duplicates, corrections=args.corrections, conflicts=args.conflicts,
        late_devices=args.late_devices, corrupt=args.corrupt, gzip_late=args.gzip_late,
    )
    counts = write_fleet(options, args.out).counts
    print(f"wrote {counts['readings']} readings from {counts['devices']} devices at "
          f"{counts['sites']} sites to {args.out}: {counts['stream_lines']} lines in "
          f"{counts['stream_files']} stream files, {counts['late_lines']} in "
          f"{counts['late_files']} late reports, {counts['corrupt_lines']} of them corrupt")
    end = dt.datetime.combine(options.start + dt.timedelta(days=options.days), dt.time(), dt.UTC)
    if end > dt.datetime.now(dt.UTC):
        print("note: readings later than now will be quarantined as 'in the future' if ingested "
              "before their time", file=sys.stderr)
    return 0
