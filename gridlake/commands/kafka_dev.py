"""`gridlake kafka-dev`: run a one-node Kafka broker (KRaft) in the foreground until Ctrl-C.

Example:
    $ gridlake kafka-dev --port 9092 --dir .kafka
    Kafka broker ready at 127.0.0.1:9092 (data in .kafka); Ctrl-C to stop.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gridlake.commands._args import positive_int
from gridlake.commands._foreground import run_until_stopped


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "kafka-dev", help="run a local one-node Kafka broker until Ctrl-C",
        description="Run Apache Kafka (KRaft, from the jars `make jars` fetched) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=positive_int, default=None,
                        help="the port clients connect to (default: a free one)")
    parser.add_argument("--dir", type=Path, default=None, metavar="D",
                        help="keep the broker's data here across runs (default: a temporary "
                             "folder, removed on exit)")
    parser.add_argument("--partitions", type=positive_int, default=3, metavar="N",
                        help="partitions of topics created on first use (default 3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streaming.kafka_broker import BrokerError, KafkaBroker

    def ready(broker, folder: Path) -> None:
        print(f"Kafka broker ready at {broker.bootstrap} (data in {folder}, log in "
              f"{broker.log_file}); Ctrl-C to stop.", flush=True)
        print(f"  e.g. gridlake produce --from OUT/stream "
              f"--to kafka:{broker.bootstrap}/telemetry", flush=True)

    def failure(broker, folder: Path) -> Exception | None:
        return None if broker.running else BrokerError(
            f"the Kafka broker stopped unexpectedly; see {broker.log_file}")

    return run_until_stopped(
        args.dir, "gridlake-kafka-",
        lambda folder: KafkaBroker(folder, port=args.port, num_partitions=args.partitions),
        ready, failure, "Kafka broker stopped.")
