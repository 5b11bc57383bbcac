"""Lines to Kafka messages (pure), file reading, and `gridlake produce` refusing bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from gridlake.cli import main
from gridlake.errors import BadArgumentError
from streaming.kafka_broker import free_port
from streaming.produce import (
    Message,
    binary_message,
    input_files,
    parse_event,
    read_lines,
    structured_message,
)

EVENT = {
    "specversion": "1.0", "id": "e-1", "source": "/sites/S001/devices/D00042",
    "type": "energy.telemetry.v1", "time": "2026-11-20T10:15:00Z",
    "datacontenttype": "application/json", "traceparent": "00-aa-bb-01", "sampled": True,
    "data": {"device_id": "D00042", "seq": 1834, "power_w": -2150.5, "soc_pct": None},
}


def test_structured_message_is_the_line_untouched_keyed_by_device_id():
    line = json.dumps(EVENT).encode()

    assert structured_message(line, parse_event(line)) == Message(value=line, key=b"D00042")


@pytest.mark.parametrize("line", [
    b'{"data": {"device_id": "D1"}, "x": "\xff"}',  # not UTF-8
    b'{"data": {"device_id": "D1"}',                # not JSON
    b'{"data": {"device_id": "D1", "power_w": NaN}}',  # NaN is not JSON
    b'["D1"]',                                      # JSON, not an object
])
def test_lines_that_do_not_parse_are_sent_as_they_are_without_a_key(line):
    assert structured_message(line, parse_event(line)) == Message(value=line, key=None)


def test_binary_message_carries_attributes_in_ce_headers_and_data_alone_as_value():
    message = binary_message(EVENT)

    assert message.key == b"D00042"
    assert dict(message.headers) == {
        "ce_specversion": b"1.0", "ce_id": b"e-1", "ce_source": b"/sites/S001/devices/D00042",
        "ce_type": b"energy.telemetry.v1", "ce_time": b"2026-11-20T10:15:00Z",
        "ce_traceparent": b"00-aa-bb-01", "ce_sampled": b"true",
        "content-type": b"application/json",
    }
    assert json.loads(message.value) == {"device_id": "D00042", "seq": 1834, "power_w": -2150.5,
                                         "soc_pct": None}


def test_read_lines_keeps_bytes_and_drops_only_line_breaks(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b"one\r\n \xff two\n\nlast")
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as stream:
        stream.write(b"zipped\n")

    assert list(read_lines(tmp_path / "a.jsonl")) == [b"one", b" \xff two", b"", b"last"]
    assert list(read_lines(tmp_path / "b.jsonl.gz")) == [b"zipped"]


def test_input_files_takes_record_files_of_a_folder_in_name_order(tmp_path):
    for name in ("b.jsonl.gz", "a.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.jsonl").write_text("")

    assert [p.name for p in input_files([tmp_path, tmp_path / "a.jsonl"])] == [
        "a.jsonl", "b.jsonl.gz"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadArgumentError, match="empty has no .jsonl or .jsonl.gz files"):
        input_files([tmp_path / "empty"])
    with pytest.raises(BadArgumentError, match="missing does not exist"):
        input_files([tmp_path / "missing"])


@pytest.mark.parametrize(("target", "says"), [
    ("kafka://127.0.0.1:9092/t", "is not a Kafka address; expected kafka:HOST:PORT/TOPIC"),
    ("kafka:127.0.0.1:{port}/t", "no Kafka broker accepts connections at 127.0.0.1:{port}"),
])
def test_produce_command_fails_with_one_sentence(tmp_path, capsys, target, says):
    (tmp_path / "a.jsonl").write_bytes(b"{}\n")
    port = free_port()

    status = main(["produce", "--from", str(tmp_path), "--to", target.format(port=port)])

    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("gridlake produce: ") and err.count("\n") == 1
    assert says.format(port=port) in err
