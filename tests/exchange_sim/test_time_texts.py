"""EWS's and Graph's time texts: what strftime and a replace() of the fraction and the zone wrote, for UTC, other
zones, naive times, fractions and the years strftime does not pad."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from exchange_sim.calendar import iso_key
from exchange_sim.ews.xmlutil import format_datetime
from exchange_sim.graph.values import local_text, utc_text

TIMES = [
    datetime(2027, 3, 10, 9, 0, tzinfo=UTC),
    datetime(2027, 3, 10, 9, 0, 5, 123456, tzinfo=UTC),
    datetime(2027, 10, 31, 1, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    datetime(2027, 10, 31, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin")),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-8))),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(1000, 1, 1, tzinfo=UTC),
    datetime(999, 1, 1, 12, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
]


def _utc_reference(when: datetime) -> str:
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ") if utc.year < 1000 else utc.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _local_reference(when: datetime) -> str:
    if when.year < 1000:
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}0"
    return when.replace(tzinfo=None, microsecond=0).isoformat() + f".{when.microsecond:06d}0"


@pytest.mark.parametrize("when", TIMES, ids=str)
def test_utc_text_is_the_instant_in_utc_to_the_second(when):
    assert utc_text(when) == _utc_reference(when)


@pytest.mark.parametrize("when", TIMES, ids=str)
def test_local_text_is_the_wall_clock_with_seven_fraction_digits_with_or_without_the_zone(when):
    assert local_text(when) == _local_reference(when) == local_text(when.replace(tzinfo=None))
    if 1000 <= when.year < 9999:  # (Tokyo is ahead of the last UTC day)
        tokyo = when.astimezone(ZoneInfo("Asia/Tokyo"))
        assert local_text(tokyo) == _local_reference(tokyo.replace(tzinfo=None))


def test_no_time_has_no_text():
    assert utc_text(None) is None


@pytest.mark.parametrize("when", TIMES, ids=str)
def test_an_ews_time_is_the_instant_in_utc_to_the_second_a_naive_one_taken_as_utc(when):
    assert format_datetime(when) == when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    naive = when.replace(tzinfo=None)
    assert format_datetime(naive) == naive.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("when", TIMES, ids=str)
def test_an_occurrence_key_is_the_instant_in_utc_to_the_second(when):
    assert iso_key(when) == _utc_reference(when)
