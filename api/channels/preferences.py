"""A contact's subscription preferences (topic × channel), its deliveries, and the suppression list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Admin, Reader, Session
from api.params import Id
from api.schemas.channels import (
    CHANNEL,
    AttemptOut,
    DeliveriesOut,
    PreferenceRule,
    PreferencesIn,
    PreferencesOut,
    SuppressionIn,
    SuppressionOut,
    SuppressionsOut,
)
from domain.errors import NotFound
from store.channels import preferences, records, suppressions

router = APIRouter(tags=["deliveries"])


async def _contact(session: Session, contact_id: int) -> None:
    if not await preferences.exists(session, contact_id):
        raise NotFound(f"there is no contact {contact_id}")


@router.get("/v1/contacts/{contact_id}/preferences", response_model=PreferencesOut, dependencies=[Reader],
            summary="A contact's subscription rules (no rule: subscribed)")
async def get_preferences(contact_id: Id, session: Session) -> PreferencesOut:
    await _contact(session, contact_id)
    rules = (await preferences.rules(session, [contact_id])).get(contact_id, {})
    return PreferencesOut(contact_id=contact_id, rules=[PreferenceRule(topic=t, channel=c, subscribed=s)
                                                        for (t, c), s in sorted(rules.items())])


@router.put("/v1/contacts/{contact_id}/preferences", response_model=PreferencesOut, dependencies=[Admin],
            summary="Replace a contact's subscription rules")
async def put_preferences(contact_id: Id, body: PreferencesIn, session: Session) -> PreferencesOut:
    await _contact(session, contact_id)
    await preferences.replace(session, contact_id, {(r.topic, r.channel): r.subscribed for r in body.rules})
    return await get_preferences(contact_id, session)


@router.get("/v1/contacts/{contact_id}/deliveries", response_model=DeliveriesOut, dependencies=[Reader],
            summary="A contact's delivery attempts, newest first: channel, state, provider id, errors, timestamps")
async def contact_deliveries(contact_id: Id, session: Session,
                             key: Annotated[str | None, Query(max_length=300, description="One step's key.")] = None,
                             limit: Annotated[int, Query(ge=1, le=500)] = 100) -> DeliveriesOut:
    found = await records.attempts_of(session, contact_id, key=key, limit=limit)
    return DeliveriesOut(attempts=[AttemptOut(**{k: v for k, v in a.__dict__.items() if k != "plan_status"},
                                              step_status=a.plan_status) for a in found])


@router.get("/v1/suppressions", response_model=SuppressionsOut, dependencies=[Reader],
            summary="The suppression list: addresses never sent to (bounces, complaints, manual entries)")
async def list_suppressions(
    session: Session,
    channel: Annotated[str | None, Query(pattern=CHANNEL)] = None,
    contact_id: Annotated[Id | None, Query()] = None,
    reason: Annotated[str | None, Query(pattern=r"^(bounce|complaint|unsubscribe|manual)$")] = None,
    after: Annotated[str, Query(max_length=120, description="`next_after` of the previous page.")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SuppressionsOut:
    rows = await suppressions.listing(session, channel=channel, contact_id=contact_id, reason=reason, after=after,
                                      limit=limit)
    return SuppressionsOut(suppressions=[SuppressionOut(**r.__dict__) for r in rows],
                           next_after=f"{rows[-1].channel}:{rows[-1].address_hash}" if len(rows) == limit else None)


@router.post("/v1/suppressions", response_model=SuppressionOut, status_code=201, dependencies=[Admin],
             summary="Suppress an address on a channel")
async def add_suppression(body: SuppressionIn, session: Session) -> SuppressionOut:
    digest = await suppressions.add_address(session, body.channel, body.address, body.reason,
                                            contact_id=body.contact_id, note=body.note)
    row = await suppressions.get(session, body.channel, digest)
    assert row is not None  # just added (or there already)
    return SuppressionOut(**row.__dict__)


@router.delete("/v1/suppressions/{channel}/{address_hash}", status_code=204, dependencies=[Admin],
               summary="Remove an address from the suppression list")
async def remove_suppression(channel: Annotated[str, Path(pattern=CHANNEL)],
                             address_hash: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
                             session: Session) -> None:
    if not await suppressions.remove(session, channel, address_hash):
        raise NotFound(f"{channel} address {address_hash} is not suppressed")
