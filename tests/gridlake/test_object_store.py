"""An `s3a://` lake on an S3-compatible server on loopback (moto's server mode).

The stream (its checkpoint inside the lake, so on S3 too), a backfill and a rollup run as child
processes configured only by environment variables: the endpoint, and credentials through the
AWS default chain's environment variables. The tables are read back from the bucket with
delta-rs, as the Dagster sensors read them, and must equal the oracle's answer.
"""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tests.gridlake.deployment import (
    BIN,
    SMALL_SPARK,
    base_env,
    check_tables,
    generate_fleet,
    gridlake,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

BUCKET = "gridlake-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server in its own process on a free loopback port, with an empty bucket; its
    URL. (In-process, its thread would wait for the GIL while delta-rs holds it.)"""
    import boto3

    from streaming.kafka_broker import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, f"moto_server exited: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "moto_server did not listen within 120 s"
                time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_REGION"],
                     aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
                     ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_stream_backfill_and_rollup_into_an_s3a_lake_equal_the_oracle(
        s3_endpoint, tmp_path, monkeypatch):
    fleet = generate_fleet(tmp_path / "fleet")
    root = f"s3a://{BUCKET}/lakes/fleet"
    env = base_env(GRIDLAKE_SPARK_MASTER="local[2]", GRIDLAKE_S3_ENDPOINT=s3_endpoint,
                   GRIDLAKE_SPARK_CONF=" ".join(SMALL_SPARK), **CREDENTIALS)

    out = gridlake("stream", "--source", f"files:{fleet / 'stream'}", "--lake", root,
                   "--available-now", env=env)
    assert f"checkpoint {root}/_gridlake/checkpoints/" in out
    gridlake("backfill", "--lake", root, "--sites", fleet / "sites.csv", fleet / "late", env=env)
    gridlake("rollup", "--lake", root, "--from", "2026-10-31", "--to", "2026-11-02", env=env)

    # delta-rs takes the same settings from the environment (as the Dagster sensors do).
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint,
                        "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(name, value)
    from batch.lake_state import last_batches

    check_tables(root, fleet)
    stream_batch, newest = last_batches(root, "stream")
    assert stream_batch is not None and newest.kind == "backfill"
