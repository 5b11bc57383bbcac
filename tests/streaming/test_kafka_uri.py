"""`kafka:HOST:PORT/TOPIC` addresses: the shapes accepted, and one sentence for the rest."""

from __future__ import annotations

import pytest

from gridlake.cli import build_parser
from gridlake.errors import BadArgumentError
from streaming.defaults import MAX_OFFSETS_PER_TRIGGER
from streaming.kafka_uri import KafkaUri, parse_kafka_uri
from streaming.sources import KafkaSource, parse_source


@pytest.mark.parametrize(("text", "bootstrap", "topic"), [
    ("kafka:127.0.0.1:9092/telemetry", "127.0.0.1:9092", "telemetry"),
    ("kafka:broker-1.example:19092/fleet.v1_raw", "broker-1.example:19092", "fleet.v1_raw"),
    ("kafka:a:9092,b:9093/t", "a:9092,b:9093", "t"),
    ("kafka:[::1]:9092/t", "[::1]:9092", "t"),
])
def test_parse_kafka_uri_splits_servers_and_topic(text, bootstrap, topic):
    uri = parse_kafka_uri(text)

    assert uri == KafkaUri(bootstrap=bootstrap, topic=topic)
    assert str(uri) == text


@pytest.mark.parametrize(("text", "says"), [
    ("127.0.0.1:9092/telemetry", "is not a Kafka address"),
    ("kafka://127.0.0.1:9092/telemetry", "is not a Kafka address"),
    ("kafka:127.0.0.1/telemetry", "is not a Kafka address"),
    ("kafka:127.0.0.1:9092", "is not a Kafka address"),
    ("kafka:127.0.0.1:port/telemetry", "is not a Kafka address"),
    ("kafka:127.0.0.1:0/telemetry", "a port is a number from 1 to 65535"),
    ("kafka:127.0.0.1:9092/", "names the topic ''"),
    ("kafka:127.0.0.1:9092/a/b", "names the topic 'a/b'"),
    ("kafka:127.0.0.1:9092/..", "names the topic '..'"),
])
def test_parse_kafka_uri_rejects_other_shapes_in_one_sentence(text, says):
    with pytest.raises(BadArgumentError, match=says) as caught:
        parse_kafka_uri(text)

    assert "\n" not in str(caught.value) and str(caught.value).startswith(repr(text))


def test_a_kafka_source_reads_a_bounded_number_of_records_per_batch_by_default():
    args = build_parser().parse_args(["stream", "--source", "kafka:127.0.0.1:9092/t",
                                      "--lake", "lake"])
    source = parse_source(args.source, max_offsets_per_trigger=args.max_offsets_per_trigger)
    assert source.max_offsets_per_trigger == MAX_OFFSETS_PER_TRIGGER
    assert parse_source("kafka:127.0.0.1:9092/t").max_offsets_per_trigger == MAX_OFFSETS_PER_TRIGGER


@pytest.mark.parametrize("cap", [None, 0, -5, 2.5, True])
def test_a_kafka_cap_that_is_not_a_positive_whole_number_is_refused(cap):
    with pytest.raises(BadArgumentError, match="max_offsets_per_trigger is"):
        KafkaSource(KafkaUri("127.0.0.1:9092", "t"), max_offsets_per_trigger=cap)
