"""stream_progress: reports what the stream wrote, and whether it is alive, without a run.

Each tick reads the stream tables' Delta versions and the batch log with delta-rs, not Spark
(the daemon replaces the code server that evaluates sensors every minute, so a Spark driver
here would be a new JVM per minute). A table whose version moved since the last tick gets an
`AssetObservation` (version, row count, last batch), and the `silver_freshness` check is
reported whenever something moved or its verdict changed. The cursor holds the versions and
verdict last reported. It launches no runs and starts no Spark, so it is on by default.
"""

import json

from dagster import (
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from orchestration.resources import LakeResource
from orchestration.stream.assets import stream_observations
from orchestration.stream.checks import freshness_evaluation


def stream_progress_sensor(freshness_minutes: int, interval_seconds: int = 60,
                           default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING
                           ) -> SensorDefinition:
    @sensor(name="stream_progress", minimum_interval_seconds=interval_seconds,
            default_status=default_status,
            description="Observes the tables `gridlake stream` writes (Delta version, row count, "
                        "last batch) and reports the silver_freshness check.")
    def stream_progress(context: SensorEvaluationContext, lake: LakeResource):
        root = lake.lake_root()
        before = json.loads(context.cursor) if context.cursor else {}
        observations, versions, last_stream_batch = stream_observations(
            root, last_reported=before.get("versions", {}))
        if all(v is None for v in versions.values()):
            return SkipReason(f"no stream tables at {root} yet")
        freshness = freshness_evaluation(last_stream_batch, freshness_minutes)
        events: list = list(observations)
        if observations or before.get("fresh") != freshness.passed:
            events.append(freshness)
        cursor = json.dumps({"versions": versions, "fresh": freshness.passed}, sort_keys=True)
        if not events:
            return SensorResult(skip_reason="no table changed since the last tick",
                                cursor=cursor)
        return SensorResult(asset_events=events, cursor=cursor)

    return stream_progress
