"""Resources: where Spark runs and where the lake is, chosen per deployment in one place.

Assets, checks, sensors and jobs never build a SparkSession or read a path from the
environment themselves: they receive a `SparkResource` and a `LakeResource`. Which values those
hold is decided by `resources_by_deployment_name()`, picked by `GRIDLAKE_DEPLOYMENT` (`local` by
default) when the definitions are built.

Example:
    >>> resources = resources_for_deployment("test")
    >>> sorted(resources)
    ['lake', 'spark']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field, PrivateAttr

from gridlake.errors import BadArgumentError

DEFAULT_DEPLOYMENT = "local"
LATE_SUBDIR = "_landing/late"


class SparkResource(ConfigurableResource):
    """A SparkSession with Delta, created on first use by `gridlake.session.spark_session`.

    In a run the session lives as long as the run's process; in a code server (sensors) it is
    created once and reused by every evaluation. Within the test suite `spark_session` returns
    the suite's running session (getOrCreate), so assets and sensors use it as they are.
    """

    master: str | None = Field(
        default=None,
        description="Spark master URL (local[*], spark://host:7077, k8s://...); "
                    "empty: GRIDLAKE_SPARK_MASTER or local[*]")
    app_name: str = Field(default="gridlake-dagster", description="Spark application name")
    testing: bool = Field(default=False,
                          description="the test suite's settings: 2 shuffle partitions, no UI")

    _session: object | None = PrivateAttr(default=None)

    def session(self):
        """The SparkSession, created on the first call."""
        if self._session is None:
            from gridlake.session import spark_session

            self._session = spark_session(app_name=self.app_name, master=self.master or None,
                                          testing=self.testing)
        return self._session


class LakeResource(ConfigurableResource):
    """The lake root, and the landing folder watched for late reports."""

    root: str | None = Field(
        default=None, description="lake root (folder or s3a:// URL); empty: GRIDLAKE_LAKE or ./lake")
    late_dir: str | None = Field(
        default=None, description="folder of late-report files the landing sensor watches; "
                                  f"empty: <lake root>/{LATE_SUBDIR}")

    def lake_root(self) -> str:
        from gridlake.lake import default_lake_root

        root = self.root or default_lake_root()
        return root if "://" in root else str(Path(root).resolve())

    def late_reports_dir(self) -> str:
        return self.late_dir or f"{self.lake_root().rstrip('/')}/{LATE_SUBDIR}"

    def open(self, spark=None, create: bool = False):
        """The `gridlake.lake.Lake` at `root` (see `gridlake.lake.open_lake`)."""
        from gridlake.lake import open_lake

        return open_lake(self.lake_root(), create=create, spark=spark)


def _env_or(name: str, default: str | None) -> str | EnvVar | None:
    """`EnvVar(name)` when the variable is set (Dagster resolves it in each process), else
    `default`. Called while the definitions are built, never at import."""
    return EnvVar(name) if os.environ.get(name) else default


def resources_by_deployment_name() -> dict[str, dict[str, ConfigurableResource]]:
    """The resources of each deployment. `local`: the machine's Spark and lake (from the
    environment); `test`: a small local Spark like the test suite's."""
    lake = LakeResource(root=_env_or("GRIDLAKE_LAKE", None),
                        late_dir=_env_or("GRIDLAKE_LATE_DIR", None))
    return {
        "local": {
            "spark": SparkResource(master=_env_or("GRIDLAKE_SPARK_MASTER", None)),
            "lake": lake,
        },
        "test": {
            "spark": SparkResource(master="local[2]", app_name="gridlake-dagster-test",
                                   testing=True),
            "lake": lake,
        },
    }


def resources_for_deployment(name: str | None = None) -> Mapping[str, ConfigurableResource]:
    """The resources of deployment `name` (default: `GRIDLAKE_DEPLOYMENT`, else `local`)."""
    name = name or os.environ.get("GRIDLAKE_DEPLOYMENT") or DEFAULT_DEPLOYMENT
    deployments = resources_by_deployment_name()
    if name not in deployments:
        raise BadArgumentError(
            f"GRIDLAKE_DEPLOYMENT is {name!r}; known deployments are {sorted(deployments)}")
    return deployments[name]
