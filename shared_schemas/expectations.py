"""Data-quality expectations of the lake, derived from the contract and the table definitions.

Each expectation is data: a stable name, the table it checks, a Great Expectations class name
with its keyword arguments, and a severity in the manner of declarative pipelines:

- `warn`: the failure is reported and recorded, nothing else happens;
- `drop`: offending rows are not published (the rollup write leaves them out; on silver the
  same contract rules already send such records to quarantine at ingest);
- `fail`: the run fails and the partition (UTC day) is not published.

Nothing here is written by hand per column: types come from `shared_schemas.tables`, not-null,
ranges, patterns, value sets and lengths from the fields of `shared_schemas.contract`, and the
rollup invariants from which contract field each rollup column aggregates.

Severities have defaults per kind of expectation; `SEVERITY_OVERRIDES` below is the one place
to change them (a key is an expectation name or a glob over names).

Example:
    >>> from shared_schemas.expectations import expectations_for
    >>> [e.name for e in expectations_for("gold/daily_device_rollups")][:2]
    ['gold.daily_device_rollups.device_id.type', 'gold.daily_device_rollups.day.type']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from shared_schemas.contract import CURRENT, VERSIONS, Contract
from shared_schemas.rules import rules_for
from shared_schemas.tables import (
    TableSpec,
    gold_daily_device_rollups,
    gold_daily_site_rollups,
    quarantine_telemetry,
    silver_readings,
    site_energy_columns,
)

WARN, DROP, FAIL = "warn", "drop", "fail"
SEVERITIES = (WARN, DROP, FAIL)

# The one place to change a severity: expectation name (or glob) -> warn | drop | fail.
# Example: {"gold.daily_device_rollups.device_type.allowed": "drop", "silver.readings.*": "warn"}
SEVERITY_OVERRIDES: dict[str, str] = {}

# Great Expectations classes used (names in `great_expectations.expectations`).
TYPE = "ExpectColumnValuesToBeOfType"
NOT_NULL = "ExpectColumnValuesToNotBeNull"
BETWEEN = "ExpectColumnValuesToBeBetween"
IN_SET = "ExpectColumnValuesToBeInSet"
REGEX = "ExpectColumnValuesToMatchRegex"
LENGTHS = "ExpectColumnValueLengthsToBeBetween"
PAIR_A_AT_LEAST_B = "ExpectColumnPairValuesAToBeGreaterThanB"
UNIQUE_KEY = "ExpectCompoundColumnsToBeUnique"
NO_ROWS_WHERE = "UnexpectedRowsExpectation"
# Expectations judged on the table as a whole, not row by row (no row can be dropped).
TABLE_LEVEL = (TYPE,)
# The query prefix of NO_ROWS_WHERE; what follows WHERE is a constant condition from this module.
ROWS_QUERY = "SELECT * FROM {batch} WHERE "

# Default severity per table and GE class; anything not listed is `fail`.
_DEFAULTS: dict[tuple[str, str], str] = {
    # Codes and versions of quarantined records: worth knowing, never worth stopping for.
    ("quarantine/telemetry", IN_SET): WARN,
    ("quarantine/telemetry", NO_ROWS_WHERE + ":known_codes"): WARN,
    # A free-text status longer than allowed is reported, the reading is still valid data.
    ("silver/readings", LENGTHS): WARN,
}


@dataclass(frozen=True)
class ExpectationDef:
    """One expectation: what GE class checks which table, how bad a failure is, in words."""

    name: str
    table: str
    kind: str
    kwargs: tuple[tuple[str, object], ...]
    severity: str
    description: str
    column: str | None = None

    @property
    def args(self) -> dict:
        """The GE keyword arguments (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs}

    @property
    def row_level(self) -> bool:
        return self.kind not in TABLE_LEVEL


def _kw(**kwargs) -> tuple[tuple[str, object], ...]:
    return tuple(kwargs.items())


def _name(spec: TableSpec, *parts: str) -> str:
    return ".".join((spec.name, *parts))


def _default(spec: TableSpec, kind: str, tag: str = "") -> str:
    return _DEFAULTS.get((spec.path, f"{kind}:{tag}" if tag else kind), FAIL)


def _type(spec: TableSpec, column: str) -> ExpectationDef:
    data_type = spec.schema[column].dataType
    return ExpectationDef(_name(spec, column, "type"), spec.path, TYPE,
                          _kw(column=column, type_=type(data_type).__name__),
                          _default(spec, TYPE), f"{column} is {data_type.simpleString()}",
                          column)


def _not_null(spec: TableSpec, column: str) -> ExpectationDef:
    return ExpectationDef(_name(spec, column, "not_null"), spec.path, NOT_NULL,
                          _kw(column=column), _default(spec, NOT_NULL),
                          f"{column} is never null", column)


def _between(spec: TableSpec, column: str, low, high, check: str = "range") -> ExpectationDef:
    words = (f"between {low:g} and {high:g}" if low is not None and high is not None
             else f"at least {low:g}" if low is not None else f"at most {high:g}")
    return ExpectationDef(_name(spec, column, check), spec.path, BETWEEN,
                          _kw(column=column, min_value=low, max_value=high),
                          _default(spec, BETWEEN), f"{column} is {words}", column)


def _unique(spec: TableSpec, key: tuple[str, ...]) -> ExpectationDef:
    return ExpectationDef(_name(spec, "key_unique"), spec.path, UNIQUE_KEY,
                          _kw(column_list=key), _default(spec, UNIQUE_KEY),
                          f"one row per ({', '.join(key)})")


def _a_at_least_b(spec: TableSpec, a: str, b: str) -> ExpectationDef:
    return ExpectationDef(_name(spec, a, f"at_least_{b}"), spec.path, PAIR_A_AT_LEAST_B,
                          _kw(column_A=a, column_B=b, or_equal=True,
                              ignore_row_if="either_value_is_missing"),
                          _default(spec, PAIR_A_AT_LEAST_B), f"{b} <= {a}", a)


def _no_rows_where(spec: TableSpec, tag: str, condition: str, description: str,
                   column: str | None = None) -> ExpectationDef:
    return ExpectationDef(_name(spec, tag), spec.path, NO_ROWS_WHERE,
                          _kw(unexpected_rows_query=ROWS_QUERY + condition,
                              description=description),
                          _default(spec, NO_ROWS_WHERE, tag), description, column)


def _field_expectations(spec: TableSpec, contract: Contract) -> list[ExpectationDef]:
    """Type, not-null, range, pattern, value set and length of each contract field."""
    out = []
    for f in contract.fields:
        out.append(_type(spec, f.name))
        if f.required:
            out.append(_not_null(spec, f.name))
        if f.minimum is not None or f.maximum is not None:
            out.append(_between(spec, f.name, f.minimum, f.maximum))
        if f.pattern is not None:
            out.append(ExpectationDef(_name(spec, f.name, "format"), spec.path, REGEX,
                                      _kw(column=f.name, regex=f.pattern),
                                      _default(spec, REGEX),
                                      f"{f.name} is {f.pattern_sentence or f.pattern}", f.name))
        if f.allowed is not None:
            out.append(ExpectationDef(_name(spec, f.name, "allowed"), spec.path, IN_SET,
                                      _kw(column=f.name, value_set=f.allowed),
                                      _default(spec, IN_SET),
                                      f"{f.name} is one of {', '.join(f.allowed)}", f.name))
        if f.max_length is not None:
            out.append(ExpectationDef(_name(spec, f.name, "length"), spec.path, LENGTHS,
                                      _kw(column=f.name, min_value=None, max_value=f.max_length),
                                      _default(spec, LENGTHS),
                                      f"{f.name} is at most {f.max_length} characters", f.name))
    return out


def silver_expectations(contract: Contract = CURRENT) -> list[ExpectationDef]:
    spec = silver_readings(contract)
    return [*_field_expectations(spec, contract), _type(spec, "event_date"),
            _not_null(spec, "event_date"), _unique(spec, spec.key)]


def quarantine_expectations(contract: Contract = CURRENT) -> list[ExpectationDef]:
    spec = quarantine_telemetry()
    codes = sorted({r.code for c in VERSIONS for r in rules_for(c)})
    quoted = ", ".join("'" + code.replace("'", "''") + "'" for code in codes)
    return [
        *[_type(spec, c) for c in (*spec.key, *spec.partition_by, "contract_version")],
        *[_not_null(spec, c) for c in spec.key],
        _no_rows_where(spec, "has_reason", "reasons IS NULL OR size(reasons) = 0",
                       "every quarantined record carries at least one reason"),
        _no_rows_where(spec, "known_codes",
                       f"exists(reason_codes, c -> c IS NULL OR NOT c IN ({quoted}))",
                       "every reason code is a rule of a released contract"),
        ExpectationDef(_name(spec, "contract_version", "allowed"), spec.path, IN_SET,
                       _kw(column="contract_version", value_set=tuple(c.version for c in VERSIONS)),
                       _default(spec, IN_SET), "contract_version is a released contract",
                       "contract_version"),
        _unique(spec, spec.key),
    ]


# Rollup column -> (contract field it aggregates, aggregate). The one statement of what the
# gold columns mean, from which their ranges, nullability and ordering are derived.
DEVICE_ROLLUP_MEASURES: dict[str, tuple[str, str]] = {
    "energy_import_wh": ("energy_import_wh", "sum"),
    "energy_export_wh": ("energy_export_wh", "sum"),
    "min_power_w": ("power_w", "min"),
    "max_power_w": ("power_w", "max"),
    "avg_power_w": ("power_w", "avg"),
    "min_soc_pct": ("soc_pct", "min"),
    "max_soc_pct": ("soc_pct", "max"),
}
# Rollup columns that copy a contract field of the day's readings.
DEVICE_ROLLUP_COPIES = ("site_id", "device_type")


def _measure_expectations(spec: TableSpec, contract: Contract, measures: Mapping[str, tuple]
                          ) -> list[ExpectationDef]:
    out = []
    for column, (source, aggregate) in measures.items():
        f = contract.field(source)
        out.append(_type(spec, column))
        if f.required:
            out.append(_not_null(spec, column))
        if aggregate == "sum":
            # A sum of values >= 0 is >= 0; it has no upper bound.
            if f.minimum is not None and f.minimum >= 0:
                out.append(_between(spec, column, 0, None, "non_negative"))
        elif aggregate != "avg" and (f.minimum is not None or f.maximum is not None):
            # min and max of values within a range stay within it; avg follows from
            # min <= avg <= max (checked below), so a range on it would only repeat them.
            out.append(_between(spec, column, f.minimum, f.maximum))
    by_source: dict[str, dict[str, str]] = {}
    for column, (source, aggregate) in measures.items():
        by_source.setdefault(source, {})[aggregate] = column
    for aggs in by_source.values():
        if {"min", "avg", "max"} <= aggs.keys():
            out.append(_avg_within(spec, aggs["min"], aggs["avg"], aggs["max"]))
        elif "max" in aggs and "min" in aggs:
            out.append(_a_at_least_b(spec, aggs["max"], aggs["min"]))
    return out


def _avg_within(spec: TableSpec, low: str, avg: str, high: str) -> ExpectationDef:
    # An average is a floating-point sum divided by a count, so it can lie an ulp or so outside
    # [min, max] (three readings of 0.1 average 0.10000000000000002): allow a relative 1e-9 of
    # the largest magnitude. min <= max follows, so it has no expectation of its own here.
    slack = f"1e-9 * greatest(abs({low}), abs({high}), 1.0)"
    return _no_rows_where(spec, f"{avg}.within_{low}_{high}",
                          f"{avg} < {low} - {slack} OR {avg} > {high} + {slack}",
                          f"{low} <= {avg} <= {high} (up to rounding)", avg)


def device_rollup_expectations(contract: Contract = CURRENT) -> list[ExpectationDef]:
    spec = gold_daily_device_rollups()
    out = [*[_type(spec, c) for c in spec.key], *[_not_null(spec, c) for c in spec.key],
           _type(spec, "samples"), _between(spec, "samples", 1, None, "positive")]
    device = contract.field("device_id")
    out.append(ExpectationDef(_name(spec, "device_id", "format"), spec.path, REGEX,
                              _kw(column="device_id", regex=device.pattern),
                              _default(spec, REGEX), f"device_id is {device.pattern_sentence}",
                              "device_id"))
    for column in DEVICE_ROLLUP_COPIES:
        f = contract.field(column)
        out.append(_type(spec, column))
        if f.allowed is not None:
            out.append(ExpectationDef(_name(spec, column, "allowed"), spec.path, IN_SET,
                                      _kw(column=column, value_set=f.allowed),
                                      _default(spec, IN_SET),
                                      f"{column} is one of {', '.join(f.allowed)}", column))
    out.extend(_measure_expectations(spec, contract, DEVICE_ROLLUP_MEASURES))
    out.append(_unique(spec, spec.key))
    return out


def registered_sites(site_ids: Iterable[str]) -> ExpectationDef:
    """Every device rollup's site is in the site registry (`reference/sites`, given as
    `site_ids`): the site rollups join the registry for each site's timezone, so the readings
    of a site missing there are in no site rollup. Checked on the rows a rollup run writes."""
    spec = gold_daily_device_rollups()
    name = _name(spec, "site_id", "registered")
    return ExpectationDef(name, spec.path, IN_SET, _kw(column="site_id",
                                                       value_set=tuple(sorted(site_ids))),
                          resolve_severity(name, WARN, SEVERITY_OVERRIDES),
                          "site_id is a site of reference/sites (else its readings are in no "
                          "site rollup)", "site_id")


def site_rollup_expectations(contract: Contract = CURRENT) -> list[ExpectationDef]:
    spec = gold_daily_site_rollups(contract)
    totals = {"energy_import_wh": ("energy_import_wh", "sum"),
              "energy_export_wh": ("energy_export_wh", "sum")}
    energy = dict(totals)
    for _, imp, exp in site_energy_columns(contract):
        energy.update({imp: ("energy_import_wh", "sum"), exp: ("energy_export_wh", "sum")})
    return [
        *[_type(spec, c) for c in spec.key], *[_not_null(spec, c) for c in spec.key],
        _between(spec, "samples", 1, None, "positive"),
        _between(spec, "devices", 1, None, "positive"),
        # A local day lasts 24 hours, or 23/25 on a daylight-saving change.
        _between(spec, "local_day_hours", 23, 25),
        # Per-type energies are null when no device of that type reported that day.
        *[e for e in _measure_expectations(spec, contract, energy)
          if e.kind != TYPE and (e.kind != NOT_NULL or e.column in totals)],
        _unique(spec, spec.key),
    ]


# Table path -> the function building its suite; silver first.
_SUITES: dict[str, Callable[[Contract], list[ExpectationDef]]] = {
    "silver/readings": silver_expectations,
    "quarantine/telemetry": quarantine_expectations,
    "gold/daily_device_rollups": device_rollup_expectations,
    "gold/daily_site_rollups": site_rollup_expectations,
}
SUITE_TABLES = tuple(_SUITES)


def resolve_severity(name: str, default: str, overrides: Mapping[str, str]) -> str:
    """The severity of expectation `name`: an exact override, else the last matching glob,
    else `default`."""
    if name in overrides:
        return overrides[name]
    matches = [sev for pattern, sev in overrides.items() if fnmatchcase(name, pattern)]
    return matches[-1] if matches else default


def expectations_for(table: str, contract: Contract = CURRENT,
                     overrides: Mapping[str, str] | None = None) -> list[ExpectationDef]:
    """The expectation suite of a table (its path under the lake, e.g. `silver/readings`).

    Parameters:
        table: one of `SUITE_TABLES`.
        overrides: name or glob -> severity; default `SEVERITY_OVERRIDES`.
    """
    if table not in _SUITES:
        raise KeyError(f"no expectation suite for table {table!r}; suites exist for "
                       f"{', '.join(SUITE_TABLES)}")
    overrides = SEVERITY_OVERRIDES if overrides is None else overrides
    bad = {k: v for k, v in overrides.items() if v not in SEVERITIES}
    if bad:
        raise ValueError(f"severity overrides {bad} are not one of {', '.join(SEVERITIES)}")
    return [replace(e, severity=resolve_severity(e.name, e.severity, overrides))
            for e in _SUITES[table](contract)]


def all_expectations(contract: Contract = CURRENT,
                     overrides: Mapping[str, str] | None = None) -> list[ExpectationDef]:
    """Every suite's expectations, silver first."""
    return [e for t in SUITE_TABLES for e in expectations_for(t, contract, overrides)]
