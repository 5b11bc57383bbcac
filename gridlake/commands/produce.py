"""`gridlake produce`: publish telemetry files to a Kafka topic, corrupt lines included.

Example:
    $ gridlake produce --from fleet/stream --to kafka:127.0.0.1:9092/telemetry --binary-mode 0.1
"""

from __future__ import annotations

import argparse

from gridlake.commands._args import fraction, positive_float


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "produce", help="publish .jsonl/.jsonl.gz telemetry files to a Kafka topic",
        description="Publish each line of the files (raw bytes, even corrupt ones) as one Kafka "
                    "message keyed by data.device_id.",
    )
    parser.add_argument("--from", dest="sources", required=True, nargs="+", metavar="PATH",
                        help="record files, or folders of .jsonl/.jsonl.gz files (not recursive)")
    parser.add_argument("--to", dest="target", required=True, metavar="kafka:HOST:PORT/TOPIC",
                        help="the broker and topic")
    parser.add_argument("--binary-mode", type=fraction, default=0.0, metavar="FRACTION",
                        help="share of the events sent in CloudEvents binary mode (default 0)")
    parser.add_argument("--rate", type=positive_float, default=None, metavar="EVENTS_PER_S",
                        help="at most this many records per second (default: as fast as possible)")
    parser.add_argument("--seed", type=int, default=None,
                        help="makes the choice of binary-mode events repeatable")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streaming.kafka_uri import parse_kafka_uri
    from streaming.produce import produce

    target = parse_kafka_uri(args.target)
    report = produce(args.sources, target, binary_fraction=args.binary_mode, rate=args.rate,
                     seed=args.seed)
    print(report.summary())
    return 0
