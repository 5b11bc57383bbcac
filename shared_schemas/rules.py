"""Validation rules derived from the contract: each has a stable code and a human sentence.

A rule here is data (what is checked and how it is explained). `shared_schemas.spark` compiles
the same rules to Spark Column expressions; nothing else restates them.

Example:
    >>> from shared_schemas import CURRENT
    >>> from shared_schemas.rules import rules_for
    >>> [r.code for r in rules_for(CURRENT) if r.field == "seq"]
    ['seq.missing', 'seq.type', 'seq.range']
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_schemas.contract import Contract, Field

# Rule checks, in the order they are evaluated for a record.
PAYLOAD_UTF8 = "payload_utf8"
PAYLOAD_JSON = "payload_json"
ENVELOPE_MISSING = "envelope_missing"
ENVELOPE_EQUALS = "envelope_equals"
DATA_OBJECT = "data_object"
FIELD_MISSING = "field_missing"
FIELD_TYPE = "field_type"
FIELD_PATTERN = "field_pattern"
FIELD_ALLOWED = "field_allowed"
FIELD_RANGE = "field_range"
FIELD_LENGTH = "field_length"
FIELD_FUTURE = "field_future"

_KIND_WORDS = {
    "string": "a string",
    "long": "a whole number",
    "double": "a number",
    "timestamp": "an RFC 3339 timestamp string",
}


@dataclass(frozen=True)
class Rule:
    """One validation rule: a stable code, what it checks, and the sentence a person reads."""

    code: str
    check: str
    sentence: str
    field: str | None = None


def _range_sentence(f: Field) -> str:
    if f.minimum is not None and f.maximum is not None:
        return f"'{f.name}' must be between {f.minimum:g} and {f.maximum:g}."
    if f.minimum is not None:
        return f"'{f.name}' must be at least {f.minimum:g}."
    return f"'{f.name}' must be at most {f.maximum:g}."


def _field_rules(f: Field) -> list[Rule]:
    rules = []
    if f.required:
        rules.append(Rule(f"{f.name}.missing", FIELD_MISSING,
                          f"Required field '{f.name}' is missing or null.", f.name))
    rules.append(Rule(f"{f.name}.type", FIELD_TYPE,
                      f"'{f.name}' must be {_KIND_WORDS[f.kind]}.", f.name))
    if f.pattern is not None:
        rules.append(Rule(f"{f.name}.format", FIELD_PATTERN,
                          f"'{f.name}' must be {f.pattern_sentence or 'like ' + f.pattern}.", f.name))
    if f.allowed is not None:
        rules.append(Rule(f"{f.name}.allowed", FIELD_ALLOWED,
                          f"'{f.name}' must be one of {', '.join(f.allowed)}.", f.name))
    if f.minimum is not None or f.maximum is not None:
        rules.append(Rule(f"{f.name}.range", FIELD_RANGE, _range_sentence(f), f.name))
    if f.max_length is not None:
        rules.append(Rule(f"{f.name}.length", FIELD_LENGTH,
                          f"'{f.name}' must be at most {f.max_length} characters.", f.name))
    if f.max_seconds_after_ingest is not None:
        minutes = f.max_seconds_after_ingest / 60
        rules.append(Rule(f"{f.name}.future", FIELD_FUTURE,
                          f"'{f.name}' is more than {minutes:g} minutes after the record was ingested.",
                          f.name))
    return rules


def rules_for(contract: Contract) -> tuple[Rule, ...]:
    """Every rule of a contract version, in evaluation order."""
    rules = [
        Rule("payload.utf8", PAYLOAD_UTF8, "The payload is not valid UTF-8."),
        Rule("payload.json", PAYLOAD_JSON, "The payload is not a JSON object."),
    ]
    for attr in contract.envelope:
        if attr.required:
            rules.append(Rule(f"envelope.{attr.name}.missing", ENVELOPE_MISSING,
                              f"The CloudEvents attribute '{attr.name}' is missing.", attr.name))
        if attr.equals is not None:
            rules.append(Rule(f"envelope.{attr.name}.value", ENVELOPE_EQUALS,
                              f"The CloudEvents attribute '{attr.name}' must be '{attr.equals}'.",
                              attr.name))
    rules.append(Rule("data.object", DATA_OBJECT, "The event has no 'data' object."))
    for f in contract.fields:
        rules.extend(_field_rules(f))
    return tuple(rules)


def rule_by_code(contract: Contract, code: str) -> Rule:
    for rule in rules_for(contract):
        if rule.code == code:
            return rule
    raise KeyError(f"no rule with code {code!r} in contract v{contract.version}")
