"""`gridlake schema`: show the event contract, its rules, or its JSON Schema for producers."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema", help="print the event contract's JSON Schema or validation rules",
        description="Print the JSON Schema of the current event contract (for producers), or "
                    "its validation rules with their reason codes.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--rules", action="store_true", help="list rule codes and sentences")
    group.add_argument("--export", action="store_true",
                       help="rewrite shared_schemas/telemetry.vN.schema.json from the contract")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared_schemas import CURRENT
    from shared_schemas.json_schema import exported_path, render
    from shared_schemas.rules import rules_for

    if args.rules:
        for rule in rules_for(CURRENT):
            print(f"{rule.code:32} {rule.sentence}")
    elif args.export:
        exported_path(CURRENT).write_text(render(CURRENT), encoding="utf-8")
        print(exported_path(CURRENT))
    else:
        print(render(CURRENT), end="")
    return 0
