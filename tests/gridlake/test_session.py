"""Where Spark runs and where the lake lives is configuration, decided in `gridlake.session`."""

from __future__ import annotations

import pytest

from gridlake.errors import SetupError
from gridlake.session import conf_from_text, object_store_options, storage_conf

JARS = ["/jars/delta-spark_4.2_2.13-4.4.0.jar", "/jars/hadoop-aws-3.5.0.jar"]


def test_no_object_store_variables_set_nothing():
    assert storage_conf({}, JARS) == {}


def test_an_s3_compatible_endpoint_gets_path_style_access_and_its_region():
    conf = storage_conf({"GRIDLAKE_S3_ENDPOINT": "http://127.0.0.1:9000",
                         "AWS_REGION": "eu-central-1"}, JARS)
    assert conf == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-central-1",
    }
    # No credential ever travels through Spark settings: the AWS default chain finds them.
    assert not any("key" in k.lower() or "secret" in k.lower() for k in conf)


def test_delta_rs_reads_the_same_endpoint_and_region_and_no_credentials():
    assert object_store_options({}) == {}
    assert object_store_options({"GRIDLAKE_S3_ENDPOINT": "http://127.0.0.1:9000",
                                 "GRIDLAKE_S3_REGION": "eu-central-1",
                                 "AWS_REGION": "us-east-1",
                                 "AWS_SECRET_ACCESS_KEY": "never-copied"}) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "eu-central-1"}
    assert object_store_options({"GRIDLAKE_S3_ENDPOINT": "https://s3.example.test"}) == {
        "AWS_ENDPOINT_URL": "https://s3.example.test"}


def test_the_dynamodb_log_store_is_set_for_both_s3_schemes_when_its_jar_is_there():
    jars = [*JARS, "/jars/delta-storage-s3-dynamodb-4.4.0.jar"]
    conf = storage_conf({"GRIDLAKE_DELTA_DYNAMODB_TABLE": "delta_log",
                         "GRIDLAKE_S3_REGION": "eu-west-1"}, jars)
    assert conf["spark.delta.logStore.s3a.impl"] == "io.delta.storage.S3DynamoDBLogStore"
    assert conf["spark.delta.logStore.s3.impl"] == "io.delta.storage.S3DynamoDBLogStore"
    assert conf["spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName"] == "delta_log"
    assert conf["spark.io.delta.storage.S3DynamoDBLogStore.ddb.region"] == "eu-west-1"


def test_the_dynamodb_log_store_without_its_jar_is_one_clear_sentence():
    with pytest.raises(SetupError, match="no delta-storage-s3-dynamodb jar"):
        storage_conf({"GRIDLAKE_DELTA_DYNAMODB_TABLE": "delta_log"}, JARS)


def test_spark_conf_passthrough_takes_quoted_values_and_refuses_what_is_not_spark_key_value():
    assert conf_from_text("spark.a=1  spark.b='x y' spark.c=") == {
        "spark.a": "1", "spark.b": "x y", "spark.c": ""}
    assert conf_from_text("") == {}
    for bad in ("spark.a", "hadoop.x=1", "=1"):
        with pytest.raises(SetupError, match="spark.KEY=VALUE"):
            conf_from_text(bad)
