"""The pure helpers of batch.delta_io: which commit a run wrote, the replaceWhere predicate."""

from __future__ import annotations

import datetime as dt

import pytest

from batch.delta_io import dates_predicate, written_by


@pytest.mark.parametrize(("actions", "expected"), [
    ([{"commitInfo": {"operation": "WRITE", "userMetadata": "rollup-1"}}], True),
    ([{"commitInfo": {"operation": "MERGE"}}, {"txn": {"appId": "rollup-1", "version": 0}},
      {"add": {"path": "x"}}], True),
    ([{"commitInfo": {"operation": "WRITE", "userMetadata": "rollup-2"}},
      {"txn": {"appId": "stream-7", "version": 3}}], False),
    ([{"commitInfo": {"operation": "WRITE"}}, {"add": {"path": "rollup-1"}}], False),
    ([], False),
])
def test_a_commit_is_the_runs_by_its_user_metadata_or_transaction_id(actions, expected):
    assert written_by(actions, "rollup-1") is expected


def test_dates_predicate_renders_dates_only():
    days = [dt.date(2026, 11, 2), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
    assert dates_predicate("day", days) == "`day` IN (DATE'2026-11-01', DATE'2026-11-02')"
    for bad in ([], ["2026-11-01' OR 1=1 --"], [dt.datetime(2026, 11, 1)]):
        with pytest.raises(ValueError):
            dates_predicate("day", bad)
    with pytest.raises(ValueError):
        dates_predicate("day` OR 1=1 --", days)
