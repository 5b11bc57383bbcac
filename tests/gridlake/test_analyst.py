"""The analyst API: the same answers through delta-rs + pandas and through Spark SQL."""

from __future__ import annotations

import pandas as pd
import pytest


def _sorted(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].astype("datetime64[us]")
    return frame.sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("name, key", [
    ("gold.daily_device_rollups", ["device_id", "day"]),
    ("gold.daily_site_rollups", ["site_id", "local_day"]),
    ("silver.readings", ["device_id", "ts"]),
])
def test_light_path_and_spark_agree(spark, demo_like_lake, name, key):
    from gridlake.analyst import AnalystLake, register_tables

    lake = AnalystLake(str(demo_like_lake), _spark=spark)
    assert name in register_tables(spark, str(demo_like_lake))
    light = lake.pandas(name)
    columns = [c for c in light.columns if c not in ("headers", "payload", "kafka_key")]
    heavy = lake.sql(f"select {', '.join(columns)} from {name}").toPandas()  # names: our specs
    light = light[columns]
    pd.testing.assert_frame_equal(_sorted(light, key), _sorted(heavy, key), check_dtype=False)
    assert len(light) > 0


def test_time_travel_reads_the_same_version_both_ways(spark, demo_like_lake):
    from gridlake.analyst import AnalystLake

    lake = AnalystLake(str(demo_like_lake), _spark=spark)
    history = lake.history("gold.daily_device_rollups")
    assert history["version"].tolist() == sorted(history["version"], reverse=True)
    first_write = int(history[history["operation"] == "WRITE"]["version"].min())
    light = lake.pandas("gold.daily_device_rollups", version=first_write)
    heavy = lake.table("gold.daily_device_rollups", version=first_write)
    assert int(light["samples"].sum()) == heavy.groupBy().sum("samples").first()[0]
    assert len(light) == heavy.count()


def test_values_are_bound_not_pasted(spark, demo_like_lake):
    from gridlake.analyst import AnalystLake, register_tables

    register_tables(spark, str(demo_like_lake))
    lake = AnalystLake(str(demo_like_lake), _spark=spark)
    hostile = "x' OR 1=1 --"
    found = lake.sql("select count(*) as n from gold.daily_device_rollups where device_id = :d",
                     d=hostile).first()["n"]
    assert found == 0
    assert lake.pandas("gold.daily_device_rollups", filters=[("device_id", "=", hostile)]).empty


def test_connect_refuses_a_folder_that_is_not_a_lake(tmp_path):
    from gridlake.analyst import connect
    from gridlake.errors import BadArgumentError

    with pytest.raises(BadArgumentError, match="is not a gridlake lake"):
        connect(str(tmp_path))


def test_unknown_table_names_the_tables_there_are(demo_like_lake):
    from gridlake.analyst import connect
    from gridlake.errors import BadArgumentError

    with pytest.raises(BadArgumentError, match="gold.daily_device_rollups"):
        connect(str(demo_like_lake)).pandas("gold.nope")


def test_light_path_hides_rows_a_deletion_vector_removed(spark, demo_like_lake):
    import json

    from gridlake.analyst import AnalystLake

    log = demo_like_lake / "silver" / "readings" / "_delta_log"
    marked = [action["add"] for commit in sorted(log.glob("*.json"))
              for action in map(json.loads, commit.read_text().splitlines())
              if action.get("add", {}).get("deletionVector")]
    assert marked, "the lake's late reports should have left deletion vectors in silver"
    lake = AnalystLake(str(demo_like_lake), _spark=spark)
    light = lake.pandas("silver.readings", columns=["device_id", "ts"])
    assert not light.duplicated().any()
    assert len(light) == spark.read.format("delta").load(str(log.parent)).count()


def test_light_path_filters_match_plain_pandas_filtering(demo_like_lake):
    from gridlake.analyst import connect
    from gridlake.errors import BadArgumentError

    lake = connect(str(demo_like_lake))
    columns = ["device_id", "day", "samples"]
    whole = lake.pandas("gold.daily_device_rollups", columns=columns)
    devices = sorted(whole["device_id"].unique())
    first_day = min(whole["day"])
    got = lake.pandas("gold.daily_device_rollups", columns=columns, filters=[
        ("device_id", "not in", devices[:2]), ("day", ">=", str(first_day)), ("samples", ">=", 1)])
    expected = whole[~whole["device_id"].isin(devices[:2]) & (whole["day"] >= first_day)
                     & (whole["samples"] >= 1)]
    assert 0 < len(got) < len(whole)
    key = ["device_id", "day"]
    assert (got.sort_values(key).reset_index(drop=True)
            .equals(expected.sort_values(key).reset_index(drop=True)))
    with pytest.raises(BadArgumentError, match="unknown operator 'like'"):
        lake.pandas("gold.daily_device_rollups", filters=[("device_id", "like", "D%")])
    with pytest.raises(BadArgumentError, match="no such column"):
        lake.pandas("gold.daily_device_rollups", filters=[("x' OR 1=1", "=", 1)])


def test_light_path_reads_iso_text_as_a_time_in_filters(demo_like_lake):
    from gridlake.analyst import connect

    lake = connect(str(demo_like_lake))
    whole = lake.pandas("silver.readings", columns=["device_id", "ts"])
    middle = whole["ts"].sort_values().iloc[len(whole) // 2]
    got = lake.pandas("silver.readings", columns=["device_id", "ts"],
                      filters=[("ts", "<", middle.isoformat())])
    assert len(got) == int((whole["ts"] < middle).sum()) > 0
