"""`gridlake quarantine`: list quarantined records by reason, and replay them after a rule fix.

Example:
    $ gridlake quarantine --lake lake list --reason power_w.range --since 2026-11-01
    $ gridlake quarantine --lake lake replay --reason power_w.range
    $ gridlake quarantine --lake lake replay --ids "file:/data/late/D00042_x.jsonl#7"
"""

from __future__ import annotations

import argparse

from gridlake.commands._args import add_lake_argument, date_arg, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quarantine", help="list quarantined records by reason; replay them with today's rules",
        description="Work with the quarantine: `list` groups records by the rule they broke; "
                    "`replay` re-validates open entries with the current contract, upserts "
                    "those that now pass, marks them replayed (entries are never deleted) and "
                    "recomputes the rollups of the days they touch. Replaying twice changes "
                    "nothing.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="group quarantined records by reason code")
    listing.add_argument("--reason", metavar="CODE", help="only records that broke this rule")
    listing.add_argument("--since", type=date_arg, metavar="DATE",
                         help="only entries quarantined on or after this UTC date (YYYY-MM-DD)")
    listing.add_argument("--status", default="quarantined",
                         choices=("quarantined", "replayed", "reprocessed", "superseded", "all"),
                         help="which entries to list (default: the open ones)")
    listing.add_argument("--examples", type=positive_int, default=3, metavar="N",
                         help="example records shown per reason (default 3)")
    listing.set_defaults(func=run_list)

    again = actions.add_parser("replay", help="re-validate open entries with the current rules")
    again.add_argument("--reason", metavar="CODE", help="only records that broke this rule")
    again.add_argument("--ids", nargs="+", metavar="ID", help="only these record ids")
    again.set_defaults(func=run_replay)
    add_lake_argument(parser, listing, again)


def _open(args: argparse.Namespace, app: str):
    from gridlake.lake import ensure_tables, open_lake
    from gridlake.session import spark_session

    spark = spark_session(app_name=app)
    lake = open_lake(args.lake, spark=spark)
    ensure_tables(spark, lake)
    return spark, lake


def _unknown_reason(reason: str | None) -> str | None:
    from batch.quarantine import known_codes, printable

    if reason is None or reason in known_codes():
        return None
    return f"(note: {printable(reason, 80)!s} is not a rule code of the current contract)"


def run_list(args: argparse.Namespace) -> int:
    from batch.quarantine import printable, quarantine_groups

    spark, lake = _open(args, "gridlake-quarantine")
    status = None if args.status == "all" else args.status
    groups = quarantine_groups(spark, lake, reason=args.reason, since=args.since, status=status,
                               examples=args.examples)
    if not groups:
        what = f" with reason {printable(args.reason, 80)}" if args.reason else ""
        print(f"no {args.status} record{what} in the quarantine")
        if note := _unknown_reason(args.reason):
            print(note)
        return 0
    for group in groups:
        print("\n".join(group.lines()))
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from batch.quarantine import replay

    spark, lake = _open(args, "gridlake-quarantine-replay")
    print("\n".join(replay(spark, lake, reason=args.reason, ids=args.ids).lines()))
    if note := _unknown_reason(args.reason):
        print(note)
    return 0
