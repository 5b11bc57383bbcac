"""The contract compiled to Spark: types, the parse of a raw payload, and the validation rules.

`parse_and_validate(contract)` is the one place a raw record becomes typed columns plus the
list of reasons it is invalid; the stream, backfill, reprocess and quarantine replay all call it.

Example:
    >>> records.transform(parse_and_validate(CURRENT))       # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shared_schemas import rules as R
from shared_schemas.contract import Contract, Field

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "timestamp": T.TimestampType(),
}

REASON_TYPE = T.StructType([
    T.StructField("code", T.StringType()),
    T.StructField("message", T.StringType()),
])

# Variant type names (from schema_of_variant) accepted for each contract kind.
_INTEGER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")
_RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"

# Envelope attributes become these silver/quarantine columns.
ENVELOPE_COLUMNS = {
    "id": "event_id",
    "source": "event_source",
    "type": "event_type",
    "time": "event_time",
    "specversion": "event_specversion",
    "traceparent": "traceparent",
    "tracestate": "tracestate",
}


def data_struct(contract: Contract) -> T.StructType:
    """The Spark schema of the event's `data` object, as typed columns."""
    return T.StructType([
        T.StructField(f.name, SPARK_TYPES[f.kind], nullable=not f.required)
        for f in contract.fields
    ])


def _header(name: str) -> Column:
    """The value of one Kafka header as a string (the first one, if repeated)."""
    match = F.filter(F.coalesce(F.col("headers"), F.array()), lambda h: h["key"] == F.lit(name))
    return F.try_element_at(match, F.lit(1))["value"].cast("string")


def _envelope_variant(contract: Contract) -> Column:
    """The event as one variant: a structured-mode payload, or binary-mode headers + data."""
    text = F.col("payload").cast("string")
    structured = F.try_parse_json(text)
    binary = F.try_parse_json(F.to_json(F.struct(
        *[_header(f"ce_{name}").alias(name) for name in contract.attribute_names],
        F.try_parse_json(text).alias("data"),
    )))
    return F.when(_header("ce_specversion").isNotNull(), binary).otherwise(structured)


def _kind_ok(f: Field, vtype: Column, typed: Column, text: Column | None = None) -> Column:
    """Whether a present value has the field's kind: its variant type name `vtype`, its value
    cast to the kind `typed` and, for a timestamp, the string it was read from `text`."""
    if f.kind == "string":
        return vtype == "STRING"
    if f.kind == "long":
        return vtype.isin(*_INTEGER_TYPES)
    if f.kind == "double":
        return (vtype.isin(*_INTEGER_TYPES, "DOUBLE", "FLOAT") | vtype.startswith("DECIMAL"))
    # timestamp: an RFC 3339 string that Spark can read as an instant.
    return (vtype == "STRING") & text.rlike(_RFC3339) & typed.isNotNull()


def _field_checks(f: Field, value: Column, present: Column, ok: Column,
                  ingest_time: Column) -> dict[str, Column]:
    """Column expressions, one per rule check, true where that rule is broken."""
    checks: dict[str, Column] = {
        R.FIELD_MISSING: ~present,
        R.FIELD_TYPE: present & ~ok,
    }
    if f.pattern is not None:
        checks[R.FIELD_PATTERN] = ok & ~value.rlike(f.pattern)
    if f.allowed is not None:
        checks[R.FIELD_ALLOWED] = ok & ~value.isin(*f.allowed)
    if f.minimum is not None or f.maximum is not None:
        low = value < F.lit(f.minimum) if f.minimum is not None else F.lit(False)
        high = value > F.lit(f.maximum) if f.maximum is not None else F.lit(False)
        checks[R.FIELD_RANGE] = ok & (low | high)
    if f.max_length is not None:
        checks[R.FIELD_LENGTH] = ok & (F.length(value) > f.max_length)
    if f.max_seconds_after_ingest is not None:
        limit = ingest_time + F.make_interval(secs=F.lit(f.max_seconds_after_ingest))
        checks[R.FIELD_FUTURE] = ok & (value > limit)
    return checks


def parse_and_validate(contract: Contract) -> Callable[[DataFrame], DataFrame]:
    """Parse raw records and attach every broken rule's code and sentence.

    Input columns: `payload` (binary, as received), `headers` (Kafka headers or null) and
    `ingest_time` (timestamp). Output: the input plus the envelope columns (`event_id`, ...),
    one typed column per contract field, and `reasons` (array of code/message; empty = valid).
    """

    def transform(df: DataFrame) -> DataFrame:
        plan = _validation(contract, df.sparkSession.sparkContext._gateway)
        parsed = df
        for stage in plan.stages:
            parsed = parsed.select("*", *stage)
        return parsed.withColumn("reasons", plan.reasons).drop(*plan.internal)

    return transform


@dataclass(frozen=True)
class _Validation:
    """The validation of one contract as Spark columns: `stages` are added in turn (each may
    use the columns of the stages before it), then `reasons`; the `internal` ones dropped."""

    stages: tuple[tuple[Column, ...], ...]
    reasons: Column
    internal: tuple[str, ...]


@functools.lru_cache(maxsize=8)
def _validation(contract: Contract, gateway: object) -> _Validation:
    """`parse_and_validate`'s columns, built once per contract (and JVM gateway).

    Building them takes thousands of calls into the JVM, about 0.85 s on 2 cores: every
    micro-batch paid that before anything ran. Spark columns are unresolved expressions, so the
    same ones serve every batch's DataFrame.
    """
    del gateway  # a key only: columns live in the JVM they were built in
    utf8_ok = F.is_valid_utf8(F.col("payload").cast("string"))
    names = contract.attribute_names
    times = [f for f in contract.fields if f.kind == "timestamp"]
    # One cast reads the envelope (attributes as strings, `data` as a variant) and one the
    # data fields: only an object casts to a struct, so a null struct means "not an object".
    envelope = T.StructType([*[T.StructField(n, T.StringType()) for n in names],
                             T.StructField("data", T.VariantType())])
    fields = T.StructType([T.StructField(f.name, T.VariantType()) for f in contract.fields])
    # Staged columns keep every sub-expression computed once (and the plan small).
    stages: list[dict[str, Column]] = [
        {"_utf8": F.coalesce(utf8_ok, F.lit(False))},
        {"_v": F.when(F.col("_utf8"), _envelope_variant(contract))},
        {"_e": F.try_variant_get("_v", "$", envelope.simpleString())},
        {"_json": F.col("_utf8") & F.col("_e").isNotNull()},
        {"_f": F.try_variant_get("_e.data", "$", fields.simpleString())},
        {"_data_ok": F.col("_json") & F.col("_f").isNotNull()},
        {**{ENVELOPE_COLUMNS.get(name, name): F.col(f"_e.{name}") for name in names},
         **{f"_r_{f.name}": F.col(f"_f.{f.name}") for f in contract.fields}},
        # Each value is cast once, to its contract type (a timestamp from its text); it is
        # kept only where its JSON type fits.
        {f"_s_{f.name}": F.try_variant_get(f"_r_{f.name}", "$", "string") for f in times},
        {**{f"_t_{f.name}": F.schema_of_variant(f"_r_{f.name}") for f in contract.fields},
         **{f"_c_{f.name}": (
             F.col(f"_s_{f.name}").try_cast("timestamp") if f in times else
             F.try_variant_get(f"_r_{f.name}", "$", SPARK_TYPES[f.kind].simpleString()))
            for f in contract.fields}},
        {f"_p_{f.name}": (F.col("_data_ok") & F.col(f"_r_{f.name}").isNotNull()
                          & (F.col(f"_t_{f.name}") != "VOID"))
         for f in contract.fields},
        {f"_ok_{f.name}": F.col(f"_p_{f.name}") & _kind_ok(
            f, F.col(f"_t_{f.name}"), F.col(f"_c_{f.name}"),
            F.col(f"_s_{f.name}") if f in times else None)
         for f in contract.fields},
        {f.name: F.when(F.col(f"_ok_{f.name}"), F.col(f"_c_{f.name}")) for f in contract.fields},
    ]

    equals = {a.name: a.equals for a in contract.envelope}
    broken: dict[tuple[str, str | None], Column] = {
        (R.PAYLOAD_UTF8, None): ~F.col("_utf8"),
        (R.PAYLOAD_JSON, None): F.col("_utf8") & ~F.col("_json"),
        (R.DATA_OBJECT, None): F.col("_json") & ~F.col("_data_ok"),
    }
    for name in names:
        value = F.col(ENVELOPE_COLUMNS.get(name, name))
        broken[(R.ENVELOPE_MISSING, name)] = F.col("_json") & value.isNull()
        if equals.get(name) is not None:
            broken[(R.ENVELOPE_EQUALS, name)] = (
                F.col("_json") & value.isNotNull() & (value != F.lit(equals[name])))
    for f in contract.fields:
        checks = _field_checks(f, F.col(f.name), F.col(f"_p_{f.name}"),
                               F.col(f"_ok_{f.name}"), F.col("ingest_time"))
        for check, expr in checks.items():
            broken[(check, f.name)] = F.col("_data_ok") & expr

    reasons = F.filter(
        F.array(*[
            F.when(F.coalesce(broken[(r.check, r.field)], F.lit(False)),
                   F.struct(F.lit(r.code).alias("code"), F.lit(r.sentence).alias("message")))
            for r in R.rules_for(contract)
        ]),
        lambda reason: reason.isNotNull(),
    )
    return _Validation(
        stages=tuple(tuple(c.alias(n) for n, c in stage.items()) for stage in stages if stage),
        reasons=reasons,
        internal=tuple(n for stage in stages for n in stage if n.startswith("_")))
