"""Segment call parsing, clock-skew correction and identity resolution rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import (
    Event,
    IdentityKind,
    InvalidEvent,
    Owner,
    corrected_timestamp,
    parse_batch,
    parse_event,
    resolve,
)

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
ids = count()


def _new_id() -> str:
    return f"gen-{next(ids)}"


def _event(user: str | None = None, anon: str | None = None, type_: str = "track", **extra: object) -> Event:
    raw = {"userId": user, "anonymousId": anon, "event": "e", **extra}
    return parse_event(raw, type_=type_, received_at=NOW, sent_at=None, new_id=_new_id)


times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))


@given(times, times, times)
def test_corrected_timestamp_keeps_the_device_gap_anchored_on_receipt(ts: datetime, sent: datetime,
                                                                       received: datetime) -> None:
    corrected = corrected_timestamp(ts, sent, received)
    assert received - corrected == sent - ts


def test_missing_timestamp_means_received_and_missing_sent_at_trusts_the_timestamp() -> None:
    assert corrected_timestamp(None, NOW, NOW + timedelta(hours=1)) == NOW + timedelta(hours=1)
    assert corrected_timestamp(NOW, None, NOW + timedelta(hours=1)) == NOW


def test_batch_sent_at_applies_to_every_call() -> None:
    body = {"sentAt": "2024-05-01T00:00:10Z", "batch": [
        {"type": "track", "userId": "u", "event": "a", "timestamp": "2024-05-01T00:00:00Z"}]}
    [event] = parse_batch(body, received_at=NOW, new_id=_new_id)
    assert event.timestamp == NOW - timedelta(seconds=10)


@pytest.mark.parametrize(("raw", "type_", "problem"), [
    ({"event": "x"}, "track", "userId"),
    ({"userId": "u"}, "track", "event"),
    ({"userId": "u"}, "alias", "previousId"),
    ({"userId": "u"}, "group", "groupId"),
    ({"userId": "u", "event": "x", "timestamp": "yesterday"}, "track", "timestamp"),
    ({"userId": "u", "event": "x", "messageId": "m" * 101}, "track", "messageId"),
    ({"userId": "u", "event": "x", "properties": [1]}, "track", "properties"),
    ({"type": "purchase", "userId": "u"}, None, "type"),
])
def test_invalid_calls_are_rejected_with_the_field_named(raw: dict, type_: str | None, problem: str) -> None:
    with pytest.raises(InvalidEvent, match=problem):
        parse_event(raw, type_=type_, received_at=NOW, sent_at=None, new_id=_new_id)


def test_numeric_user_ids_are_strings_and_user_id_wins_attribution() -> None:
    event = _event(user=42, anon="a")  # type: ignore[arg-type]
    assert event.primary_key == (IdentityKind.USER_ID, "42")


def test_identify_links_anonymous_history_to_the_known_contact() -> None:
    known = {(IdentityKind.USER_ID, "u"): Owner(1, "u"), (IdentityKind.ANONYMOUS_ID, "a"): Owner(2, None)}
    res = resolve([_event(user="u", anon="a", type_="identify")], known)
    [person] = res.persons
    assert (person.contact_id, person.merged) == (1, [2])


def test_two_known_users_never_merge() -> None:
    known = {(IdentityKind.USER_ID, "u1"): Owner(1, "u1"), (IdentityKind.USER_ID, "u2"): Owner(2, "u2"),
             (IdentityKind.ANONYMOUS_ID, "shared"): Owner(1, "u1")}
    res = resolve([_event(user="u2", anon="shared")], known)
    assert all(p.merged == [] for p in res.persons)
    assert res.persons[res.event_person[0]].contact_id == 2


def test_an_anonymous_contact_gains_the_user_id_when_the_user_is_new() -> None:
    known = {(IdentityKind.ANONYMOUS_ID, "a"): Owner(7, None)}
    res = resolve([_event(user="new", anon="a", type_="identify")], known)
    [person] = res.persons
    assert (person.contact_id, person.user_id, person.gains_user_id) == (7, "new", True)


names = st.sampled_from(["u1", "u2", "u3", None])
anons = st.sampled_from(["a1", "a2", "a3", "a4", None])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, anons).filter(lambda p: p != (None, None)), min_size=1, max_size=12),
       st.dictionaries(st.sampled_from(["a1", "a2", "a3", "a4"]), st.sampled_from([(10, "u1"), (11, None),
                                                                                  (12, "u2"), (13, None)])))
def test_resolution_invariants(pairs: list[tuple[str | None, str | None]],
                               anon_owners: dict[str, tuple[int, str | None]]) -> None:
    known = {(IdentityKind.ANONYMOUS_ID, a): Owner(c, u) for a, (c, u) in anon_owners.items()}
    for contact, user in {(10, "u1"), (12, "u2")}:
        known[(IdentityKind.USER_ID, user)] = Owner(contact, user)
    events = [_event(user=u, anon=a) for u, a in pairs]
    res = resolve(events, known)
    assert len(res.event_person) == len(events)
    # Events of one userId land on one person; a person never holds two userIds.
    by_user: dict[str, int] = {}
    for event, person in zip(events, res.event_person, strict=True):
        if event.user_id:
            assert by_user.setdefault(event.user_id, person) == person
            assert res.persons[person].user_id == event.user_id
    for person in res.persons:
        users = {k[1] for k in person.keys if k[0] == IdentityKind.USER_ID}
        assert len(users) <= 1
        # Known userIds keep their own contact; merged contacts never include another known user's.
        if person.user_id in ("u1", "u2"):
            assert person.contact_id == known[(IdentityKind.USER_ID, person.user_id)].contact_id
        assert not {10, 12} & set(person.merged)
    # Every contact ends up in at most one person, as survivor or merged.
    placed = [c for p in res.persons for c in ([p.contact_id] if p.contact_id else []) + p.merged]
    assert len(placed) == len(set(placed))
