"""Test-wide fixtures: one SparkSession with Delta for the whole run, lakes in tmp folders."""

from __future__ import annotations

import os

import pytest

os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"


@pytest.fixture(scope="session")
def spark():
    from gridlake.session import spark_session

    session = spark_session(app_name="gridlake-tests", master="local[2]", testing=True)
    yield session
    session.stop()


FLEET_ARGS = ["--devices", "6", "--days", "1", "--interval-minutes", "15", "--seed", "11",
              "--stream-files", "4", "--duplicates", "0.04", "--corrections", "0.04",
              "--conflicts", "0.02", "--late-devices", "0.34", "--corrupt", "0.05"]


@pytest.fixture
def cli(spark, monkeypatch, capsys):
    """Run `gridlake ...` in-process on the test session; returns (status, stdout, stderr)."""
    import gridlake.session
    from gridlake.cli import main

    monkeypatch.setattr(gridlake.session, "spark_session", lambda **_: spark)

    def run(*argv: str) -> tuple[int, str, str]:
        status = main([str(a) for a in argv])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


@pytest.fixture(scope="session")
def small_fleet(tmp_path_factory):
    """A small generated fleet (stream/, late/, sites.csv), shared read-only by the tests."""
    from gridlake.cli import main

    out = tmp_path_factory.mktemp("fleet")
    assert main(["generate", "--out", str(out), *FLEET_ARGS]) == 0
    return out


@pytest.fixture(scope="session")
def demo_like_lake(spark, small_fleet, tmp_path_factory):
    """Built as `make demo` builds one: stream, sites, rollup --changed, backfill, quality."""
    from unittest import mock

    import gridlake.session
    from gridlake.cli import main

    root = tmp_path_factory.mktemp("notebook-lake") / "lake"
    steps = [
        ["stream", "--source", f"files:{small_fleet / 'stream'}", "--lake", root,
         "--available-now", "--max-files-per-trigger", "2"],
        ["sites", "--lake", root, "load", small_fleet / "sites.csv"],
        ["rollup", "--lake", root, "--changed"],
        ["backfill", "--lake", root, small_fleet / "late"],
        ["quality", "--lake", root],
    ]
    with mock.patch.object(gridlake.session, "spark_session", lambda **_: spark):
        for argv in steps:
            assert main([str(a) for a in argv]) == 0, argv
    return root
