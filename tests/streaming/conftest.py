"""Fixtures of the streaming tests: one real Kafka broker (KRaft) for the whole run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A running one-node Kafka broker on a free 127.0.0.1 port, its data in a tmp folder."""
    from streaming.kafka_broker import KafkaBroker

    with KafkaBroker(tmp_path_factory.mktemp("kafka"), num_partitions=2) as broker:
        yield broker
