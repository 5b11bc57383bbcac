"""`gridlake sites`: load the site registry (site_id, timezone, latitude, longitude).

Example:
    $ gridlake sites --lake lake load fleet/sites.csv
    sites: 12 loaded into reference/sites
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gridlake.commands._args import add_lake_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sites", help="load the site registry that site rollups use for local days",
        description="Replace reference/sites with a sites.csv (site_id, timezone, latitude, "
                    "longitude); site rollups follow each site's local calendar day.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = actions.add_parser("load", help="replace the registry with FILE")
    load.add_argument("file", type=Path, metavar="FILE", help="a sites.csv")
    add_lake_argument(parser, load)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from batch.sites import load_sites
    from gridlake.errors import BadArgumentError
    from gridlake.lake import open_lake
    from gridlake.session import spark_session

    if not args.file.is_file():
        raise BadArgumentError(f"site registry {str(args.file)!r} does not exist or is not a file")
    spark = spark_session(app_name="gridlake-sites")
    lake = open_lake(args.lake, create=True, spark=spark)
    print(f"sites: {load_sites(spark, lake, args.file)} loaded into reference/sites")
    return 0
