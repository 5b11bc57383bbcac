"""The JSON Schema for producers, derived from the contract.

`gridlake schema --json-schema` prints it; `shared_schemas/telemetry.v1.schema.json` is the
exported copy, kept in sync by a test.

Example:
    >>> from shared_schemas import CURRENT
    >>> json_schema(CURRENT)["properties"]["data"]["required"][:2]
    ['device_id', 'site_id']
"""

from __future__ import annotations

import json
from pathlib import Path

from shared_schemas.contract import Contract, Field

_TYPES = {"string": "string", "long": "integer", "double": "number", "timestamp": "string"}


def _property(f: Field) -> dict:
    prop: dict = {"type": _TYPES[f.kind] if f.required else [_TYPES[f.kind], "null"]}
    if f.description:
        prop["description"] = f.description
    if f.kind == "timestamp":
        prop["format"] = "date-time"
    if f.minimum is not None:
        prop["minimum"] = f.minimum
    if f.maximum is not None:
        prop["maximum"] = f.maximum
    if f.pattern is not None:
        prop["pattern"] = f.pattern
    if f.allowed is not None:
        prop["enum"] = list(f.allowed) if f.required else [*f.allowed, None]
    if f.max_length is not None:
        prop["maxLength"] = f.max_length
    return prop


def json_schema(contract: Contract) -> dict:
    """A JSON Schema (draft 2020-12) of one structured-mode CloudEvent of this contract."""
    envelope = {}
    for attr in contract.envelope:
        envelope[attr.name] = {"const": attr.equals} if attr.equals else {"type": "string"}
    for name in contract.extension_attributes:
        envelope[name] = {"type": "string"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"gridlake:{contract.event_type}:contract-v{contract.version}",
        "title": f"gridlake telemetry event ({contract.event_type}, contract v{contract.version})",
        "type": "object",
        "required": [a.name for a in contract.envelope if a.required] + ["data"],
        "properties": {
            **envelope,
            "data": {
                "type": "object",
                "required": [f.name for f in contract.fields if f.required],
                "properties": {f.name: _property(f) for f in contract.fields},
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
    }


def exported_path(contract: Contract) -> Path:
    return Path(__file__).with_name(f"telemetry.v{contract.version}.schema.json")


def render(contract: Contract) -> str:
    return json.dumps(json_schema(contract), indent=2, ensure_ascii=False) + "\n"
