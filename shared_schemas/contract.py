"""The telemetry event contract, declared once as data.

Everything else — the Spark schema used to parse events, the validation rules that decide
quarantine, the JSON Schema handed to producers, the table definitions and the quality
suites — is derived from the objects in this module. Change the contract here and only here.

Example:
    >>> from shared_schemas import CURRENT
    >>> CURRENT.field("seq").kind
    'long'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Value kinds a contract field may have; each maps to one Spark type and one JSON Schema type.
KINDS = ("string", "long", "double", "timestamp")

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
ID_CHARSET_SENTENCE = "1–64 characters of letters, digits, '_', '.', ':' or '-'"


@dataclass(frozen=True)
class Field:
    """One field of the event's `data` object, with the rules its values must follow."""

    name: str
    kind: str
    required: bool = True
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    pattern_sentence: str | None = None
    allowed: tuple[str, ...] | None = None
    max_length: int | None = None
    # For timestamps: the latest a value may be, relative to the record's ingest time.
    max_seconds_after_ingest: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name!r} has kind {self.kind!r}; expected one of {KINDS}")


@dataclass(frozen=True)
class EnvelopeAttribute:
    """A CloudEvents attribute of the envelope (outside `data`)."""

    name: str
    required: bool = True
    # The only value accepted, when the contract fixes it (specversion, type).
    equals: str | None = None


@dataclass(frozen=True)
class Contract:
    """One version of the telemetry event contract."""

    version: int
    event_type: str
    envelope: tuple[EnvelopeAttribute, ...]
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    order_by: str
    event_time_field: str
    extension_attributes: tuple[str, ...] = field(default=("traceparent", "tracestate"))

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"the contract v{self.version} has no field {name!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Every CloudEvents attribute an event may carry: the envelope's, then extensions."""
        return tuple(a.name for a in self.envelope) + self.extension_attributes

    def with_fields(self, *extra: Field, version: int | None = None) -> Contract:
        """A new contract version with extra fields appended (how the contract evolves)."""
        return replace(self, fields=self.fields + extra, version=version or self.version + 1)


V1 = Contract(
    version=1,
    event_type="energy.telemetry.v1",
    envelope=(
        EnvelopeAttribute("specversion", equals="1.0"),
        EnvelopeAttribute("id"),
        EnvelopeAttribute("source"),
        EnvelopeAttribute("type", equals="energy.telemetry.v1"),
        EnvelopeAttribute("time"),
        EnvelopeAttribute("datacontenttype", required=False),
    ),
    fields=(
        Field("device_id", "string", pattern=ID_PATTERN, pattern_sentence=ID_CHARSET_SENTENCE,
              description="The device that took the reading."),
        Field("site_id", "string", pattern=ID_PATTERN, pattern_sentence=ID_CHARSET_SENTENCE,
              description="The site the device is installed at."),
        Field("device_type", "string", allowed=("battery", "solar", "ev_charger", "meter"),
              description="What kind of device it is."),
        Field("ts", "timestamp", max_seconds_after_ingest=300,
              description="The reading's time (RFC 3339)."),
        Field("seq", "long", minimum=0,
              description="Per-device transmission counter; a correction is re-sent with a higher seq."),
        Field("power_w", "double", minimum=-1_000_000, maximum=1_000_000,
              description="Instantaneous power in watts (negative = export/discharge)."),
        Field("energy_import_wh", "double", minimum=0, maximum=1_000_000,
              description="Energy imported over the interval that ends at ts."),
        Field("energy_export_wh", "double", minimum=0, maximum=1_000_000,
              description="Energy exported over the interval that ends at ts."),
        Field("soc_pct", "double", required=False, minimum=0, maximum=100,
              description="Battery state of charge."),
        Field("temperature_c", "double", required=False, minimum=-60, maximum=120,
              description="Device temperature."),
        Field("status", "string", required=False, max_length=64, description="Free-text status."),
    ),
    key=("device_id", "ts"),
    order_by="seq",
    event_time_field="ts",
)

# Every contract version ever released, oldest first; the last one is what gridlake writes.
VERSIONS: tuple[Contract, ...] = (V1,)
CURRENT: Contract = VERSIONS[-1]
