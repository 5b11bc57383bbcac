"""`gridlake lineage`: trace a gold number back to its sources, or a source forward to gold.

Example:
    $ gridlake lineage --lake lake --device D00042 --day 2026-11-20
    $ gridlake lineage --lake lake --device D00042 --ts 2026-11-20T10:15:00Z --json
    $ gridlake lineage --lake lake --impact landing/part-0003.jsonl
    $ gridlake lineage --lake lake --impact kafka:telemetry:0:1000-1999
"""

from __future__ import annotations

import argparse
import json

from gridlake.commands._args import add_lake_argument, date_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lineage", help="trace a gold row to its source records, or a source to what it changed",
        description="Backward (--device with --day or --ts): the gold row, the silver version "
                    "and run it was computed from, each contributing reading with its bronze "
                    "record, source coordinates, CloudEvents id, trace id and the batch that "
                    "wrote it, and (with --ts) the upsert decisions for that reading. Forward "
                    "(--impact): the silver readings and gold days a file or a Kafka offset "
                    "range produced, and how many of its records were quarantined.")
    add_lake_argument(parser)
    parser.add_argument("--device", metavar="ID", help="device id (compared as a value)")
    parser.add_argument("--day", type=date_arg, metavar="DATE", help="UTC day (YYYY-MM-DD)")
    parser.add_argument("--ts", metavar="TIMESTAMP",
                        help="one reading's time (RFC 3339, e.g. 2026-11-20T10:15:00Z)")
    parser.add_argument("--impact", metavar="SOURCE",
                        help="a file path, or kafka:TOPIC:PARTITION:FROM-TO (offsets included)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridlake.errors import BadArgumentError
    from gridlake.lake import open_lake
    from gridlake.lineage import parse_source, parse_timestamp, source_impact, trace_day
    from gridlake.session import spark_session

    if args.impact is not None and (args.device or args.day or args.ts):
        raise BadArgumentError("give either --impact SOURCE or --device with --day/--ts, not both")
    if args.impact is None:
        if not args.device:
            raise BadArgumentError("give --device ID with --day DATE or --ts TIMESTAMP, "
                                   "or --impact SOURCE")
        if args.day is None and args.ts is None:
            raise BadArgumentError(f"give --day DATE or --ts TIMESTAMP for device {args.device!r}")
    ts = parse_timestamp(args.ts) if args.ts is not None else None
    source = parse_source(args.impact) if args.impact is not None else None  # fail before Spark
    spark = spark_session(app_name="gridlake-lineage")
    lake = open_lake(args.lake, spark=spark)
    if source is not None:
        impact = source_impact(spark, lake, parse_source(args.impact, spark))
        print(json.dumps(impact.to_dict(), indent=2) if args.json else impact_text(impact))
    else:
        day = trace_day(spark, lake, args.device, args.day, ts)
        print(json.dumps(day.to_dict(), indent=2) if args.json else day_text(day))
    return 0


# -- terminal rendering -------------------------------------------------------------------------

def _ts(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") + "Z" if value is not None else "-"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    return [line.rstrip()] + ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                              for r in rows]


def _num(value) -> str:
    return "-" if value is None else f"{value:,.1f}" if isinstance(value, float) else str(value)


def day_text(day) -> str:
    what = f"reading {_ts(day.ts)}" if day.ts is not None else f"day {day.day}"
    out = [f"device {day.device_id} · {what}"]
    gold = day.gold
    if gold:
        out.append(f"gold: samples {gold['samples']} · import {_num(gold['energy_import_wh'])} Wh"
                   f" · export {_num(gold['energy_export_wh'])} Wh · power "
                   f"{_num(gold['min_power_w'])}..{_num(gold['max_power_w'])} W (avg "
                   f"{_num(gold['avg_power_w'])})")
        out.append(f"      computed from silver v{gold['silver_version']} by run "
                   f"{gold['run_id']} at {_ts(gold['computed_at'])}")
    else:
        out.append("gold: no row (rollups not computed for this day yet)")
    latest = (f" (latest v{day.silver_latest_version})"
              if day.silver_latest_version != day.silver_version else "")
    out.append(f"silver: {len(day.readings)} reading(s) as of v{day.silver_version}{latest}")
    if day.silver_version_gone is not None:
        numbers = ("they give the gold row's numbers" if day.gold_matches_readings else
                   "they give other numbers than the gold row: the day changed after it was "
                   "computed, and `gridlake rollup --changed` recomputes it")
        out.append(f"      v{day.silver_version_gone}, which the gold row was computed from, can "
                   f"no longer be read (its files were vacuumed): these are the readings of "
                   f"the latest version, and {numbers}")
    if day.readings:
        out.append("")
        out += _table(
            ["ts", "seq", "event id", "trace id", "source", "written by"],
            [[_ts(r.ts), str(r.seq), r.event_id or "-", r.trace_id or "-", r.coordinates,
              f"{r.batch_kind or '?'} {r.run_id}/{r.batch_id}"
              + ("" if r.in_bronze else " (not in bronze)")] for r in day.readings])
    if day.decisions:
        out.append("")
        out.append("decisions:")
        out += _table(
            ["decided at", "record", "seq", "event id", "decision", "winner", "run/batch",
             "silver v"],
            [[_ts(d["decided_at"]), d["record_id"], str(d["seq"]), d["event_id"] or "-",
              d["decision"], f"{d['winner_event_id']} (seq {d['winner_seq']})",
              f"{d['run_id']}/{d['batch_id']}",
              f"{d['silver_version_read']}->{d['silver_version_written']}"]
             for d in day.decisions])
    elif day.decision_counts:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(day.decision_counts.items()))
        out.append(f"decisions logged for this day: {counts}")
    return "\n".join(out)


def impact_text(impact) -> str:
    status = ", ".join(f"{k} {v}" for k, v in sorted(impact.quarantine_by_status.items()))
    out = [f"source {impact.source}",
           f"bronze records: {impact.bronze_records} · quarantined: {impact.quarantined}"
           + (f" ({status})" if status else ""),
           f"silver readings it provides: {len(impact.readings)}"
           + (f" · won then replaced: {impact.won_then_superseded}"
              if impact.won_then_superseded else ""),
           f"gold days: {len(impact.days)}"]
    if impact.days:
        out.append("")
        out += _table(["device", "day", "gold samples", "computed from"],
                      [[d["device_id"], str(d["day"]),
                        str(d["gold"]["samples"]) if d["gold"] else "(no gold row)",
                        f"silver v{d['gold']['silver_version']}" if d["gold"] else "-"]
                       for d in impact.days])
    return "\n".join(out)
