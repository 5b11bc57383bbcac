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
