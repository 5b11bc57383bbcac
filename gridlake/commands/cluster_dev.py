"""`gridlake cluster-dev`: run a Spark standalone cluster on 127.0.0.1 until Ctrl-C.

Example:
    $ gridlake cluster-dev --workers 2
    Spark standalone cluster ready: master spark://127.0.0.1:41234 (UI http://127.0.0.1:40111)
      export GRIDLAKE_SPARK_MASTER=spark://127.0.0.1:41234
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gridlake.commands._args import positive_int
from gridlake.commands._foreground import run_until_stopped


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cluster-dev", help="run a local Spark standalone cluster (master + workers) until Ctrl-C",
        description="Run a Spark standalone master and its workers from pyspark's own "
                    "distribution on 127.0.0.1 (free ports). Jobs started with "
                    "GRIDLAKE_SPARK_MASTER set to the printed URL run on its executors.")
    parser.add_argument("--workers", type=positive_int, default=2, metavar="N",
                        help="number of workers (default 2)")
    parser.add_argument("--cores", type=positive_int, default=1, metavar="N",
                        help="cores each worker offers (default 1)")
    parser.add_argument("--memory", default="1g", metavar="SIZE",
                        help="memory each worker offers to executors (default 1g)")
    parser.add_argument("--dir", type=Path, default=None, metavar="D",
                        help="keep the daemons' logs and work dirs here (default: a temporary "
                             "folder, removed on exit)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridlake.cluster import ClusterError, StandaloneCluster

    def ready(cluster, folder: Path) -> None:
        print(f"Spark standalone cluster ready: master {cluster.master_url} "
              f"(UI {cluster.web_url}), {args.workers} worker(s) of {args.cores} core(s) "
              f"and {args.memory}; logs in {folder}. Ctrl-C to stop.", flush=True)
        print(f"  export GRIDLAKE_SPARK_MASTER={cluster.master_url}", flush=True)

    def failure(cluster, folder: Path) -> Exception | None:
        return None if cluster.running else ClusterError(
            f"a daemon of the Spark cluster stopped unexpectedly; see {folder}")

    return run_until_stopped(
        args.dir, "gridlake-cluster-",
        lambda folder: StandaloneCluster(folder, workers=args.workers, cores=args.cores,
                                         memory=args.memory),
        ready, failure, "Spark cluster stopped.")
