"""Campaigns: create, list, get with live progress, launch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from temporalio.client import Client
from temporalio.common import SearchAttributePair, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.deps import Admin, Reader, Session, Temporal
from api.hygiene import ID_LIST_BODY, body_limit
from api.params import Cursor, Id
from api.runtime import Runtime
from api.schemas.campaigns import Audience, CampaignIn, CampaignOut, RunOut
from domain.campaigns import CampaignStatus
from store.campaigns import definitions, runs
from store.campaigns.models import Campaign, CampaignRun
from workflows.campaigns import CAMPAIGN_ID, TASK_QUEUE, CampaignRunInput, CampaignWorkflow
from workflows.schedules import kind

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


async def _out(session: Session, request: Request, campaign: Campaign) -> CampaignOut:
    return (await _out_many(session, request, [campaign]))[0]


async def _out_many(session: Session, request: Request, campaigns: Sequence[Campaign]) -> list[CampaignOut]:
    latest = await runs.latest_runs(session, [c.id for c in campaigns])
    ui = request.app.state.temporal_ui
    out = []
    for campaign in campaigns:
        run_out = None
        if campaign.id in latest:
            run, counts = latest[campaign.id]
            run_out = RunOut(
                number=run.number, status=run.status, workflow_id=run.workflow_id, total=counts.total,
                queued=counts.queued, sent=counts.sent, failed=counts.failed, started_at=run.started_at,
                finished_at=run.finished_at,
                temporal_ui=f"{ui}/namespaces/default/workflows/{run.workflow_id}" if ui else None,
            )
        out.append(CampaignOut(
            id=campaign.id, name=campaign.name, channel=campaign.channel, status=campaign.status,
            subject=campaign.subject, body=campaign.body, html=campaign.html,
            audience=Audience.model_validate(campaign.audience), created_at=campaign.created_at, run=run_out,
        ))
    return out


@router.post("", response_model=CampaignOut, status_code=201, dependencies=[Admin], summary="Create a draft campaign")
@body_limit(ID_LIST_BODY)
async def create_campaign(body: CampaignIn, session: Session, request: Request) -> CampaignOut:
    campaign = await definitions.create_campaign(
        session, name=body.name, channel=body.channel, subject=body.subject, body=body.body, html=body.html,
        contact_ids=body.audience.contact_ids)
    return await _out(session, request, campaign)


@router.get("", response_model=list[CampaignOut], dependencies=[Reader], summary="List campaigns")
async def list_campaigns(session: Session, request: Request, after: Cursor = 0,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[CampaignOut]:
    return await _out_many(session, request, await definitions.list_campaigns(session, after_id=after, limit=limit))


@router.get("/{campaign_id}", response_model=CampaignOut, dependencies=[Reader],
            summary="Get a campaign with the live progress of its latest run")
async def get_campaign(campaign_id: Id, session: Session, request: Request) -> CampaignOut:
    return await _out(session, request, await definitions.get_campaign(session, campaign_id))


@router.post("/{campaign_id}/launch", response_model=CampaignOut, status_code=202, dependencies=[Admin],
             summary="Launch a campaign now: starts one CampaignWorkflow for this run")
async def launch_campaign(campaign_id: Id, session: Session, request: Request, client: Temporal) -> CampaignOut:
    run = await runs.start_run(session, campaign_id)
    campaign = await definitions.get_campaign(session, campaign_id)
    await _start_workflow(client, request.app.state.runtime, campaign, run)
    return await _out(session, request, campaign)


@router.post("/{campaign_id}/pause", response_model=CampaignOut, dependencies=[Admin],
             summary="Pause a running campaign: the current batch finishes, no new batch starts")
async def pause_campaign(campaign_id: Id, session: Session, request: Request, client: Temporal) -> CampaignOut:
    return await _steer(campaign_id, session, request, client, CampaignStatus.PAUSED, CampaignWorkflow.pause)


@router.post("/{campaign_id}/resume", response_model=CampaignOut, dependencies=[Admin],
             summary="Resume a paused campaign")
async def resume_campaign(campaign_id: Id, session: Session, request: Request, client: Temporal) -> CampaignOut:
    return await _steer(campaign_id, session, request, client, CampaignStatus.RUNNING, CampaignWorkflow.resume)


async def _steer(campaign_id: int, session: Session, request: Request, client: Client, target: CampaignStatus,
                 signal: object) -> CampaignOut:
    campaign, run = await runs.steer(session, campaign_id, target)
    if run is not None:
        await client.get_workflow_handle(run.workflow_id).signal(signal)  # type: ignore[arg-type]
    return await _out(session, request, campaign)


async def _start_workflow(client: Client, runtime: Runtime, campaign: Campaign, run: CampaignRun) -> None:
    # Started inside the request's transaction: if Temporal refuses, the run row is rolled back.
    try:
        await client.start_workflow(
            CampaignWorkflow.run,
            CampaignRunInput(campaign_id=campaign.id, run_id=run.id, batch_size=runtime.settings.campaign_batch_size),
            id=run.workflow_id, task_queue=TASK_QUEUE, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=kind("campaign", SearchAttributePair(CAMPAIGN_ID, str(campaign.id))),
            static_summary=f"Campaign #{campaign.id} run {run.number}: {campaign.channel} broadcast",
        )
    except WorkflowAlreadyStartedError as exc:
        raise HTTPException(409, f"Run {run.number} of campaign {campaign.id} is already started.") from exc
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the campaign run: {exc.message}. "
                                 "Check the worker and server.") from exc
