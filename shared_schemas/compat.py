"""Contract versions as JSON, and the compatibility check between two versions.

Compatible means: every field of the old version is still there with the same kind and no
stricter requiredness, and every new field is optional. That is what lets a running lake take
a new version without a rebuild.

Example:
    >>> from shared_schemas import V1
    >>> from shared_schemas.contract import Field
    >>> check_compatible(V1, V1.with_fields(Field("voltage_v", "double", required=False)))
    []
"""

from __future__ import annotations

import dataclasses

from shared_schemas.contract import Contract, EnvelopeAttribute, Field


def contract_to_dict(contract: Contract) -> dict:
    return dataclasses.asdict(contract)


def contract_from_dict(data: dict) -> Contract:
    return Contract(
        version=data["version"],
        event_type=data["event_type"],
        envelope=tuple(EnvelopeAttribute(**a) for a in data["envelope"]),
        fields=tuple(
            Field(**{**f, "allowed": tuple(f["allowed"]) if f.get("allowed") else None})
            for f in data["fields"]
        ),
        key=tuple(data["key"]),
        order_by=data["order_by"],
        event_time_field=data["event_time_field"],
        extension_attributes=tuple(data.get("extension_attributes", ())),
    )


def check_compatible(old: Contract, new: Contract) -> list[str]:
    """Sentences naming each incompatible change from `old` to `new` (empty when compatible)."""
    problems = []
    new_fields = {f.name: f for f in new.fields}
    for f in old.fields:
        if f.name not in new_fields:
            problems.append(f"field '{f.name}' was removed")
            continue
        g = new_fields[f.name]
        if g.kind != f.kind:
            problems.append(f"field '{f.name}' changed type from {f.kind} to {g.kind}")
        if g.required and not f.required:
            problems.append(f"field '{f.name}' became required")
    old_names = {f.name for f in old.fields}
    for g in new.fields:
        if g.name not in old_names and g.required:
            problems.append(f"new field '{g.name}' is required; new fields must be optional")
    if tuple(new.key) != tuple(old.key):
        problems.append(f"the key changed from {old.key} to {new.key}")
    if new.version < old.version:
        problems.append(f"version {new.version} is older than the lake's {old.version}")
    return problems
