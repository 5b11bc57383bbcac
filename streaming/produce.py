"""Publish telemetry files to a Kafka topic, one message per line, corrupt lines included.

Each line of a `.jsonl` / `.jsonl.gz` file becomes one message whose value is the line's bytes
exactly as written (without the line break), whether or not it is UTF-8 or JSON: invalid
records must reach the stream, where they are quarantined, not dropped. The key is
`data.device_id` when the line is a JSON event that has one, else there is no key. On request a
fraction of the events is sent in CloudEvents binary mode instead (attributes in `ce_*` headers,
`content-type` from `datacontenttype`, the value being the JSON of `data` alone), so the
consumer's two decoding paths are both exercised.

Example:
    >>> from streaming.kafka_uri import parse_kafka_uri
    >>> report = produce(["fleet/stream"], parse_kafka_uri("kafka:127.0.0.1:9092/telemetry"),
    ...                  binary_fraction=0.1, seed=7)       # doctest: +SKIP
    >>> print(report.summary())                            # doctest: +SKIP
    published 2880 records from 2 files to kafka:127.0.0.1:9092/telemetry (...)
"""

from __future__ import annotations

import gzip
import json
import random
import socket
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridlake.errors import BadArgumentError, GridlakeError
from gridlake.landing import RECORD_SUFFIXES
from shared_schemas.contract import CURRENT, Contract
from streaming.kafka_uri import KafkaUri

# Attributes that binary mode does not carry as `ce_` headers.
_NOT_HEADERS = ("data", "data_base64", "datacontenttype")


class KafkaUnreachableError(GridlakeError):
    """No Kafka broker answered at the address given."""


class DeliveryError(GridlakeError):
    """Some messages were not acknowledged by the Kafka broker."""


@dataclass(frozen=True)
class Message:
    """One Kafka message to send: value, optional key, headers (name, bytes)."""

    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class ProduceReport:
    """What `produce` sent: counts per kind, and how many the broker acknowledged."""

    target: KafkaUri
    files: int = 0
    records: int = 0
    binary: int = 0
    keyless: int = 0
    blank_lines: int = 0
    delivered: int = 0
    failed: int = 0
    first_error: str | None = field(default=None, repr=False)

    def summary(self) -> str:
        details = [f"{self.binary} in CloudEvents binary mode",
                   f"{self.keyless} without a key (not JSON, or no data.device_id)"]
        if self.blank_lines:
            details.append(f"{self.blank_lines} blank lines skipped")
        return (f"published {self.delivered} records from {self.files} files to {self.target} "
                f"({'; '.join(details)})")


# -- pure: lines to messages -----------------------------------------------------------------
def parse_event(line: bytes) -> dict[str, Any] | None:
    """The line as a JSON object, or None when it is not UTF-8, not strict JSON or not an object."""
    try:
        value = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None
    return value if isinstance(value, dict) else None


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and neither must we.
    raise ValueError(f"{name} is not JSON")


def device_key(event: dict[str, Any] | None) -> bytes | None:
    """`data.device_id` as the message key, or None when the event has no string device id."""
    data = event.get("data") if event else None
    device_id = data.get("device_id") if isinstance(data, dict) else None
    return device_id.encode("utf-8") if isinstance(device_id, str) and device_id else None


def binary_mode_capable(event: dict[str, Any] | None, contract: Contract = CURRENT) -> bool:
    """True when the event can be carried in binary mode: every required envelope attribute is
    a non-empty string, the other attributes are scalars, and `data` is a JSON object."""
    if not event or not isinstance(event.get("data"), dict) or "data_base64" in event:
        return False
    required = [attr.name for attr in contract.envelope if attr.required]
    if not all(isinstance(event.get(name), str) and event[name] for name in required):
        return False
    return all(not isinstance(value, (dict, list))
               for name, value in event.items() if name != "data")


def structured_message(line: bytes, event: dict[str, Any] | None) -> Message:
    """The line sent as it is (CloudEvents structured mode, or a corrupt record)."""
    return Message(value=line, key=device_key(event))


def binary_message(event: dict[str, Any]) -> Message:
    """The event in CloudEvents Kafka binary mode: `ce_<attribute>` headers, the JSON of `data`."""
    headers = [(f"ce_{name}", _header_value(value))
               for name, value in event.items() if name not in _NOT_HEADERS and value is not None]
    if isinstance(event.get("datacontenttype"), str):
        headers.append(("content-type", event["datacontenttype"].encode("utf-8")))
    value = json.dumps(event["data"], ensure_ascii=False, separators=(",", ":"))
    return Message(value=value.encode("utf-8"), key=device_key(event), headers=tuple(headers))


def _header_value(value: Any) -> bytes:
    # CloudEvents' canonical string forms: booleans lower-case, numbers as written.
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8")


# -- edges: files in, Kafka out --------------------------------------------------------------
def input_files(sources: Iterable[str | Path]) -> list[Path]:
    """The record files named by `sources`: files as given, folders by their `.jsonl` and
    `.jsonl.gz` files (sorted by name, not recursive); each file once."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.iterdir()
                           if p.is_file() and p.name.endswith(RECORD_SUFFIXES))
            if not found:
                raise BadArgumentError(f"{source} has no .jsonl or .jsonl.gz files")
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise BadArgumentError(f"{source} does not exist")
    unique = dict.fromkeys(p.resolve() for p in files)
    return list(unique)


def read_lines(path: Path) -> Iterator[bytes]:
    """The lines of a `.jsonl` or `.jsonl.gz` file as raw bytes, without their line break."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            for line in stream:
                if line.endswith(b"\n"):
                    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
                yield line
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise BadArgumentError(f"{path} is not a readable gzip file ({exc})") from None


def produce(sources: Sequence[str | Path], target: KafkaUri, binary_fraction: float = 0.0,
            rate: float | None = None, seed: int | None = None,
            producer_config: dict[str, Any] | None = None) -> ProduceReport:
    """Publish every line of the record files in `sources` to `target`, then flush.

    Parameters:
        sources: `.jsonl` / `.jsonl.gz` files, or folders holding them.
        target: the broker and topic (see `streaming.kafka_uri.parse_kafka_uri`).
        binary_fraction: share (0–1) of the events binary mode can carry that are sent in it.
        rate: at most this many records per second; as fast as possible when None.
        seed: makes the choice of binary-mode events repeatable.
        producer_config: more confluent-kafka Producer settings, applied last.

    Raises:
        BadArgumentError: a source is missing or unreadable, or an argument is out of range.
        KafkaUnreachableError: no broker accepts connections at `target.bootstrap`.
        DeliveryError: the broker did not acknowledge every message.
    """
    from confluent_kafka import KafkaException, Producer

    if not 0.0 <= binary_fraction <= 1.0:
        raise BadArgumentError(f"binary_fraction is {binary_fraction}; it must be between 0 and 1")
    if rate is not None and rate <= 0:
        raise BadArgumentError(f"rate is {rate}; it must be greater than 0")
    files = input_files(sources)
    _check_reachable(target)
    report = ProduceReport(target=target, files=len(files))

    def on_delivery(err, _msg) -> None:
        if err is None:
            report.delivered += 1
        else:
            report.failed += 1
            report.first_error = report.first_error or err.str()

    config = {
        "bootstrap.servers": target.bootstrap,
        # Retries must not write a record twice: bronze holds each record exactly once.
        "enable.idempotence": True,
        # Same partition per key as Java producers, so a device keeps one partition whoever sends.
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "message.timeout.ms": 60_000,
    }
    config.update(producer_config or {})
    producer = Producer(config)
    choose = random.Random(seed)
    started = time.monotonic()
    for path in files:
        for line in read_lines(path):
            if not line:
                report.blank_lines += 1
                continue
            event = parse_event(line)
            if binary_mode_capable(event) and choose.random() < binary_fraction:
                message = binary_message(event)
                report.binary += 1
            else:
                message = structured_message(line, event)
            report.keyless += message.key is None
            report.records += 1
            try:
                _send(producer, target.topic, message, on_delivery)
            except KafkaException as exc:  # refused before sending, e.g. larger than allowed
                on_delivery(exc.args[0], None)
            if rate is not None:
                ahead = started + report.records / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    unsent = producer.flush(config["message.timeout.ms"] / 1000 + 10)
    report.failed += unsent
    if report.failed:
        raise DeliveryError(
            f"{report.failed} of {report.records} records were not delivered to {target}: "
            f"{report.first_error or 'the broker did not acknowledge them in time'}"
        )
    return report


def _send(producer, topic: str, message: Message, on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, value=message.value, key=message.key,
                             headers=list(message.headers) or None, on_delivery=on_delivery)
            break
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.1)
    producer.poll(0)


def _check_reachable(target: KafkaUri, timeout: float = 5.0) -> None:
    # A plain TCP connect first: librdkafka would retry silently (and noisily) for a minute.
    for server in target.bootstrap.split(","):
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return
        except OSError:
            continue
    raise KafkaUnreachableError(
        f"no Kafka broker accepts connections at {target.bootstrap}; is it running "
        f"(`gridlake kafka-dev`)?"
    )
