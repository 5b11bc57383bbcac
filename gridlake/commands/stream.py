"""`gridlake stream`: run the streaming half (bronze, quarantine, silver) from files or Kafka."""

from __future__ import annotations

import argparse
import os

from gridlake.commands._args import add_lake_argument, positive_float, positive_int
from streaming.defaults import MAX_FILES_PER_TRIGGER, MAX_OFFSETS_PER_TRIGGER


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stream", help="stream events from files or Kafka into bronze, quarantine and silver",
        description="Stream CloudEvents from a landing folder or a Kafka topic into the lake, "
                    "exactly once. Stops cleanly on SIGTERM/Ctrl-C after the current micro-batch.")
    parser.add_argument("--source", required=True, metavar="files:DIR|kafka:HOST:PORT/TOPIC")
    add_lake_argument(parser)
    parser.add_argument("--available-now", action="store_true",
                        help="process everything present at start, then exit 0")
    parser.add_argument("--trigger", type=positive_float, default=5.0, metavar="SECONDS",
                        help="micro-batch interval when running continuously (default 5)")
    parser.add_argument("--checkpoint", metavar="DIR",
                        help="checkpoint folder (default: inside the lake, derived from the source)")
    parser.add_argument("--max-files-per-trigger", type=positive_int,
                        default=MAX_FILES_PER_TRIGGER, metavar="N",
                        help="for files: at most N new files per micro-batch (default %(default)s)")
    parser.add_argument("--max-offsets-per-trigger", type=positive_int,
                        default=MAX_OFFSETS_PER_TRIGGER, metavar="N",
                        help="for Kafka: at most N records per micro-batch, over all partitions "
                             "(default %(default)s)")
    parser.add_argument("--recover", action="store_true",
                        help="start a new checkpoint for a source the lake already streamed: "
                             "finish the batches a crash left in bronze only, then skip "
                             "records bronze already holds")
    parser.add_argument("--accept-data-loss", action="store_true",
                        help="for Kafka: go on past records the broker deleted before the "
                             "stream read them (by default the stream stops and says so)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridlake.lake import open_lake
    from gridlake.session import spark_session
    from streaming.query import StreamOptions, run_stream, unread_check_seconds
    from streaming.sources import parse_source

    source = parse_source(args.source, max_files_per_trigger=args.max_files_per_trigger,
                          max_offsets_per_trigger=args.max_offsets_per_trigger,
                          accept_data_loss=args.accept_data_loss)
    options = StreamOptions(available_now=args.available_now, trigger_seconds=args.trigger,
                            checkpoint=args.checkpoint, recover=args.recover,
                            unread_check_seconds=unread_check_seconds(os.environ))
    spark = spark_session(app_name="gridlake-stream")
    lake = open_lake(args.lake, create=True, spark=spark)
    run_stream(spark, lake, source, options, report=lambda line: print(line, flush=True))
    return 0
