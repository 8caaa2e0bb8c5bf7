"""Journey routes: define, validate, publish, pause and inspect journeys, and a contact's journey history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Admin, Reader, Session, Temporal, runtime
from api.journeys.starts import start_journey
from api.params import Cursor, Id
from api.schemas.journeys import ContactJourneyOut, JourneyIn, JourneyOut, JourneyStepOut, VersionOut
from store.journeys import definitions
from store.journeys.definitions import Journey
from workflows.journeys.runtime import workflow_id

router = APIRouter(tags=["journeys"])


def _out(j: Journey) -> JourneyOut:
    return JourneyOut(id=j.id, name=j.name, status=j.status, version=j.version, draft=j.draft,
                      created_at=j.created_at, updated_at=j.updated_at,
                      versions=[VersionOut(version=v.version, published_at=v.published_at, graph=v.graph)
                                for v in j.versions],
                      counts=j.counts, waiting=j.waiting, workflow_id=workflow_id(j.id))


@router.post("/v1/journeys", response_model=JourneyOut, status_code=201, dependencies=[Admin],
             summary="Create a journey (draft); the graph is validated (422 names the node)")
async def create_journey(body: JourneyIn, session: Session) -> JourneyOut:
    return _out(await definitions.create_journey(session, body.name, body.graph))


@router.get("/v1/journeys", response_model=list[JourneyOut], dependencies=[Reader], summary="List journeys")
async def list_journeys(session: Session,
                        after: Annotated[Cursor, Query(description="Journeys with an id greater than this.")] = 0,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[JourneyOut]:
    return [_out(j) for j in await definitions.list_journeys(session, after=after, limit=limit)]


@router.get("/v1/journeys/{journey_id}", response_model=JourneyOut, dependencies=[Reader],
            summary="Get a journey with its versions, per-node counts and contacts waiting per node")
async def get_journey(journey_id: Id, session: Session) -> JourneyOut:
    return _out(await definitions.get_journey(session, journey_id))


@router.put("/v1/journeys/{journey_id}", response_model=JourneyOut, dependencies=[Admin],
            summary="Replace the draft (validated); publish to make it the version new entries take")
async def update_journey(journey_id: Id, body: JourneyIn, session: Session) -> JourneyOut:
    return _out(await definitions.update_draft(session, journey_id, body.name, body.graph))


async def _signal(client: Client, journey_id: int, signal: str) -> None:
    try:
        await client.get_workflow_handle(workflow_id(journey_id)).signal(signal)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:  # not running: it reads the status when it starts
            raise HTTPException(503, f"Temporal refused the signal: {exc.message}") from exc


@router.post("/v1/journeys/{journey_id}/publish", response_model=JourneyOut, dependencies=[Admin],
             summary="Publish the draft as a new version and run the journey (running contacts keep theirs)")
async def publish_journey(journey_id: Id, session: Session, client: Temporal, request: Request) -> JourneyOut:
    await definitions.publish(session, journey_id)
    journey = await definitions.get_journey(session, journey_id)
    await session.commit()  # the workflow reads the new version
    try:
        await start_journey(client, journey.id, journey.name, runtime(request).settings)
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the journey: {exc.message}") from exc
    await _signal(client, journey.id, "poke")
    return _out(journey)


async def _move(session: Session, client: Client, journey_id: int, action: str) -> JourneyOut:
    await definitions.change_status(session, journey_id, action)
    journey = await definitions.get_journey(session, journey_id)
    await session.commit()  # the workflow reads the new status
    await _signal(client, journey.id, action)
    return _out(journey)


@router.post("/v1/journeys/{journey_id}/pause", response_model=JourneyOut, dependencies=[Admin],
             summary="Pause a live journey: contacts stay where they are; nobody enters or moves on until it resumes "
                     "(events are kept)")
async def pause_journey(journey_id: Id, session: Session, client: Temporal) -> JourneyOut:
    return await _move(session, client, journey_id, "pause")


@router.post("/v1/journeys/{journey_id}/resume", response_model=JourneyOut, dependencies=[Admin],
             summary="Resume a paused journey")
async def resume_journey(journey_id: Id, session: Session, client: Temporal) -> JourneyOut:
    return await _move(session, client, journey_id, "resume")


@router.post("/v1/journeys/{journey_id}/archive", response_model=JourneyOut, dependencies=[Admin],
             summary="Archive a journey: every contact still in it exits (reason `archived`); its workflow ends")
async def archive_journey(journey_id: Id, session: Session, client: Temporal) -> JourneyOut:
    return await _move(session, client, journey_id, "archive")


@router.get("/v1/contacts/{contact_id}/journeys", response_model=list[ContactJourneyOut], dependencies=[Reader],
            summary="A contact's journeys: each entry's position and node transitions")
async def contact_journeys(contact_id: Id, session: Session,
                           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ContactJourneyOut]:
    return [ContactJourneyOut(journey_id=e.journey_id, name=e.name, entry=e.entry, version=e.version, node=e.node,
                              status=e.status, entered_at=e.entered_at, wake_at=e.wake_at, exit_reason=e.exit_reason,
                              steps=[JourneyStepOut(version=s.version, node=s.node, outcome=s.outcome, at=s.at,
                                                    reason=s.reason)
                                     for s in e.steps])
            for e in await definitions.contact_history(session, contact_id, limit=limit)]
