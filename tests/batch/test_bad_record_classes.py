"""Every class of bad record, written through the one write path, ends in the quarantine table
with exactly its rule's code and sentence, its bytes as received and its line; none is lost."""

from __future__ import annotations

from batch.late_reports import inspect_file, read_reports, source_names
from gridlake.ingest import WriteContext, write_batch
from gridlake.lake import open_lake
from shared_schemas import CURRENT
from shared_schemas.rules import rules_for
from tests.shared_schemas.test_validation_rules import ACCEPTED, BREAKERS, INGEST_TIME


def test_each_class_of_bad_record_is_quarantined_with_its_reason(spark, tmp_path):
    codes = sorted(BREAKERS)
    lines = [BREAKERS[code] for code in codes] + [ACCEPTED["valid"]]
    report = tmp_path / "classes.jsonl"
    report.write_bytes(b"\n".join(lines) + b"\n")
    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    files = [inspect_file(report)]
    raw = read_reports(spark, files, source_names(spark, files))
    # The validation rules' own clock: "ts in the future" is judged against the ingest time.
    ctx = WriteContext("bad-record-classes", 0, "backfill", str(report), INGEST_TIME)

    result = write_batch(spark, lake, raw, ctx)

    assert (result.records_read, result.quarantined, result.upserted) == (
        len(lines), len(codes), 1)
    sentences = {rule.code: rule.sentence for rule in rules_for(CURRENT)}
    quarantined = {
        r["source_line"]: (list(r["reason_codes"]), [x["message"] for x in r["reasons"]],
                           bytes(r["payload"]), r["status"])
        for r in spark.read.format("delta").load(lake.path("quarantine/telemetry")).collect()}
    assert quarantined == {
        line: ([code], [sentences[code]], BREAKERS[code], "quarantined")
        for line, code in enumerate(codes, start=1)}
    bronze = spark.read.format("delta").load(lake.path("bronze/telemetry"))
    assert sorted(r["source_line"] for r in bronze.collect()) == list(range(1, len(lines) + 1))
    silver = spark.read.format("delta").load(lake.path("silver/readings")).collect()
    assert [(r["event_id"], r["device_id"]) for r in silver] == [("evt-1", "D00042")]
