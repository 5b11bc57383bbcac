"""Kafka addresses as the command line writes them: `kafka:HOST:PORT/TOPIC`.

One parser for every command that takes a Kafka source or target (`produce --to`,
`stream --source`), so they accept and reject exactly the same shapes.

Example:
    >>> parse_kafka_uri("kafka:127.0.0.1:9092/telemetry")
    KafkaUri(bootstrap='127.0.0.1:9092', topic='telemetry')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gridlake.errors import BadArgumentError

SCHEME = "kafka:"
EXAMPLE = "kafka:127.0.0.1:9092/telemetry"

# HOST is a name, an IPv4 address or a bracketed IPv6 address; several may be comma-separated.
_SERVER = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")
# Kafka's own rule for topic names (kafka.common.internals.Topic).
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class KafkaUri:
    """Where a Kafka topic lives: `bootstrap` servers as the clients want them, and the topic."""

    bootstrap: str
    topic: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bootstrap}/{self.topic}"


def parse_kafka_uri(text: str) -> KafkaUri:
    """Parse `kafka:HOST:PORT/TOPIC` (or `kafka:H1:P1,H2:P2/TOPIC`) into a `KafkaUri`.

    Parameters:
        text: the address as typed on the command line.

    Raises:
        BadArgumentError: the text has another shape, a port outside 1–65535, or a topic
            name Kafka would refuse.
    """
    shape = f"expected kafka:HOST:PORT/TOPIC, e.g. {EXAMPLE}"
    if not text.startswith(SCHEME) or text.startswith(SCHEME + "//") or "/" not in text:
        raise BadArgumentError(f"{text!r} is not a Kafka address; {shape}")
    servers_text, _, topic = text[len(SCHEME):].partition("/")
    servers = servers_text.split(",")
    for server in servers:
        match = _SERVER.match(server)
        if match is None:
            raise BadArgumentError(f"{text!r} is not a Kafka address; {shape}")
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise BadArgumentError(
                f"{text!r} has port {port}; a port is a number from 1 to 65535"
            )
    if not _TOPIC.match(topic) or topic in (".", ".."):
        raise BadArgumentError(
            f"{text!r} names the topic {topic!r}; a Kafka topic is 1–249 characters of "
            f"letters, digits, '.', '_' or '-'"
        )
    return KafkaUri(bootstrap=",".join(servers), topic=topic)
