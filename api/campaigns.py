"""Campaigns: create, list, get with live progress and per-variant counts; submit, approve, reject, launch, pause,
resume, cancel; the audit trail of transitions."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasicCredentials
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Admin, Reader, Session, Temporal, basic, bearer, require_scope
from api.hygiene import ID_LIST_BODY, body_limit
from api.params import Cursor, Id
from api.runtime import Runtime
from api.schemas.campaigns import (
    Audience,
    CampaignIn,
    CampaignOut,
    ChannelContent,
    LaunchIn,
    NoteIn,
    PreviewIn,
    PreviewOut,
    RecurrenceIn,
    RecurrenceOut,
    RunOut,
    RunSummary,
    TransitionOut,
    VariantIn,
    VariantOut,
)
from domain.campaigns import BUCKETS, HOLDOUT, ApprovalPolicy, CampaignStatus, lift
from domain.campaigns_timing import Recurrence
from domain.errors import DomainError
from domain.keys import Scope, parse_key
from store.campaigns import definitions, lifecycle, occurrences, runs, variables
from store.campaigns.lifecycle import Actor
from store.campaigns.models import Campaign, CampaignRun
from workflows.campaigns import CAMPAIGN_ID, TASK_QUEUE, CampaignRunInput, CampaignWorkflow, paced_batch_size
from workflows.schedules import kind

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
Approver = Depends(require_scope(Scope.APPROVE))


async def _actor(
    session: Session,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    basic_auth: Annotated[HTTPBasicCredentials | None, Depends(basic)],
) -> Actor:
    """The key making the request (the route's scope dependency has already checked it), for the audit trail."""
    secret = (token.credentials if token else None) or (basic_auth.username if basic_auth else None) or ""
    parsed = parse_key(secret)
    return await lifecycle.actor_for(session, parsed.prefix) if parsed else Actor.system("unknown key")


Caller = Annotated[Actor, Depends(_actor)]


def _policy(request: Request) -> ApprovalPolicy:
    return ApprovalPolicy.parse(request.app.state.runtime.settings.campaign_approval)


async def _out(session: Session, request: Request, campaign: Campaign) -> CampaignOut:
    out = (await _out_many(session, request, [campaign]))[0]
    latest = await runs.latest_run(session, campaign.id)
    if out.run is not None and latest is not None:
        results = await runs.variant_results(session, latest.id, campaign.conversion_event)
        out.run.variants = [
            VariantOut(variant=name, **vars(r.counts), delivered=r.delivered, opened=r.opened, clicked=r.clicked,
                       converted=r.converted,
                       conversion_rate=r.converted / r.counts.total if campaign.conversion_event and r.counts.total
                       else None)
            for name, r in results.items()]
        treated = [r for name, r in results.items() if name != HOLDOUT]
        held = results.get(HOLDOUT)
        if campaign.conversion_event and held and held.counts.total and treated:
            total = sum(r.counts.total for r in treated)
            out.run.holdout_lift = lift(sum(r.converted for r in treated) / total if total else None,
                                        held.converted / held.counts.total)
        out.run.channels = await runs.channel_counts(session, latest.id)
        out.runs = [RunSummary(number=r.number, status=r.status, workflow_id=r.workflow_id, scheduled_at=r.scheduled_at,
                               started_at=r.started_at, finished_at=r.finished_at, error=r.error, **vars(c))
                    for r, c in await occurrences.run_history(session, campaign.id)]
    return out


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
                queued=counts.queued, sent=counts.sent, failed=counts.failed, suppressed=counts.suppressed,
                holdout=counts.holdout, cancelled=counts.cancelled, deferred=counts.deferred,
                scheduled_at=run.scheduled_at, started_at=run.started_at,
                finished_at=run.finished_at, error=run.error,
                temporal_ui=f"{ui}/namespaces/default/workflows/{run.workflow_id}" if ui else None,
            )
        out.append(CampaignOut(
            id=campaign.id, name=campaign.name, channel=campaign.channel, status=campaign.status,
            subject=campaign.subject, body=campaign.body, html=campaign.html,
            audience=Audience.model_validate(campaign.audience), created_at=campaign.created_at, run=run_out,
            variants=[VariantIn.model_validate(v) for v in campaign.variants],
            holdout_percent=campaign.holdout_bp * 100 / BUCKETS, conversion_event=campaign.conversion_event,
            incentive=campaign.incentive, approval_required=campaign.approval_required,
            created_by=campaign.created_by, chain=list(campaign.chain), max_per_second=campaign.max_per_second,
            content=ChannelContent.model_validate(campaign.content),
            recurrence=_recurrence_out(campaign), local_time=campaign.local_time, timezone=campaign.timezone,
        ))
    return out


def _recurrence_out(campaign: Campaign) -> RecurrenceOut | None:
    if campaign.recurrence is None:
        return None
    r = Recurrence.from_json(campaign.recurrence)
    return RecurrenceOut(cron=r.cron, every_seconds=r.every_seconds, timezone=r.timezone, start=r.start,
                         until=r.until, schedule_id=occurrences.schedule_id(campaign.id))


def _recurrence(body: RecurrenceIn | None) -> Recurrence | None:
    if body is None:
        return None
    return Recurrence(timezone=body.timezone, cron=body.cron,
                      every_seconds=int(body.every.total_seconds()) if body.every else None,
                      start=body.start, until=body.until)


@router.post("", response_model=CampaignOut, status_code=201, dependencies=[Admin], summary="Create a draft campaign")
@body_limit(ID_LIST_BODY)
async def create_campaign(body: CampaignIn, session: Session, request: Request, actor: Caller) -> CampaignOut:
    campaign = await definitions.create_campaign(
        session, name=body.name, channel=body.channel, subject=body.subject, body=body.body, html=body.html,
        contact_ids=body.audience.contact_ids, segment_ids=body.audience.segment_ids,
        exclude_segment_ids=body.audience.exclude_segment_ids,
        variants=[v.model_dump(exclude_none=True) for v in body.variants],
        holdout_bp=round(body.holdout_percent * BUCKETS / 100), incentive=body.incentive,
        approval_required=body.approval_required, conversion_event=body.conversion_event,
        created_by_key_id=actor.key_id, created_by=actor.name, chain=body.chain,
        content=body.content.model_dump(exclude_none=True), max_per_second=body.max_per_second,
        recurrence=_recurrence(body.recurrence), local_time=body.local_time, timezone=body.timezone)
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
             summary="Launch a campaign now, schedule it (`at`), or hand it to a recurring schedule (`recurrence`)",
             description="Now or `at`: starts one CampaignWorkflow for this run. With a `recurrence` (given here or "
                         "at create): creates the Temporal Schedule `campaign-schedule:{id}` that starts one "
                         "numbered run per occurrence; the campaign is `scheduled` between them. `local_time` sends "
                         "each recipient the message at that time on their own clock. Refused (422) when a template "
                         "uses a variable, without `| default(...)` or a guard, that any of the audience's recipients "
                         "lack (counted over the whole audience); the problem names the variable, the channel and "
                         "field, how many lack it and a few of their contact ids.")
async def launch_campaign(campaign_id: Id, session: Session, request: Request, client: Temporal,
                          actor: Caller, body: LaunchIn | None = None) -> CampaignOut:
    body = body or LaunchIn()
    at = body.at
    if at is not None:
        now = datetime.now(UTC)
        if at <= now:
            at = None  # a time already past means now
        elif at > now + timedelta(days=366):
            raise DomainError("at: schedule within a year.")
    await definitions.set_timing(session, campaign_id, local_time=body.local_time, timezone=body.timezone)
    recurring = await occurrences.start_recurring(session, campaign_id, _recurrence(body.recurrence), at=at,
                                                  policy=_policy(request), actor=actor)
    if recurring is not None:
        campaign, recurrence = recurring
        await variables.check_launch(session, campaign_id)  # a 422 rolls the launch back with the request
        await _create_schedule(client, request.app.state.runtime, campaign, recurrence)
        return await _out(session, request, campaign)
    run = await runs.start_run(session, campaign_id, _policy(request), actor, at=at)
    await variables.check_launch(session, campaign_id)  # a 422 rolls the run back with the request
    campaign = await definitions.get_campaign(session, campaign_id)
    await _start_workflow(client, request.app.state.runtime, campaign, run, at)
    return await _out(session, request, campaign)


@router.post("/{campaign_id}/pause", response_model=CampaignOut, dependencies=[Admin],
             summary="Pause a running campaign: the current batch finishes, no new batch starts")
async def pause_campaign(campaign_id: Id, session: Session, request: Request, client: Temporal,
                         actor: Caller) -> CampaignOut:
    return await _steer(campaign_id, session, request, client, CampaignStatus.PAUSED, CampaignWorkflow.pause, actor)


@router.post("/{campaign_id}/resume", response_model=CampaignOut, dependencies=[Admin],
             summary="Resume a paused campaign")
async def resume_campaign(campaign_id: Id, session: Session, request: Request, client: Temporal,
                          actor: Caller) -> CampaignOut:
    return await _steer(campaign_id, session, request, client, CampaignStatus.RUNNING, CampaignWorkflow.resume, actor)


@router.post("/{campaign_id}/cancel", response_model=CampaignOut, dependencies=[Admin],
             summary="Cancel a campaign: a running run stops at its next batch; its unsent recipients are recorded "
                     "cancelled")
async def cancel_campaign(campaign_id: Id, session: Session, request: Request, client: Temporal, actor: Caller,
                          body: NoteIn | None = None) -> CampaignOut:
    campaign, run = await lifecycle.cancel(session, campaign_id, actor, body.note if body else None)
    if campaign.recurrence is not None:
        await _schedule_call("delete", client.get_schedule_handle(occurrences.schedule_id(campaign.id)).delete())
    if run is not None:
        await _signal(client, run.workflow_id, CampaignWorkflow.cancel)
    return await _out(session, request, campaign)


@router.post("/{campaign_id}/submit", response_model=CampaignOut, dependencies=[Admin],
             summary="Submit a draft for approval")
async def submit_campaign(campaign_id: Id, session: Session, request: Request, actor: Caller,
                          body: NoteIn | None = None) -> CampaignOut:
    campaign = await lifecycle.submit(session, campaign_id, actor, body.note if body else None)
    return await _out(session, request, campaign)


@router.post("/{campaign_id}/approve", response_model=CampaignOut, dependencies=[Approver],
             summary="Approve a submitted campaign (`approve` scope; not with the key that created it)")
async def approve_campaign(campaign_id: Id, session: Session, request: Request, actor: Caller,
                           body: NoteIn | None = None) -> CampaignOut:
    campaign = await lifecycle.approve(session, campaign_id, actor, body.note if body else None)
    return await _out(session, request, campaign)


@router.post("/{campaign_id}/reject", response_model=CampaignOut, dependencies=[Approver],
             summary="Send a submitted campaign back to draft (`approve` scope)")
async def reject_campaign(campaign_id: Id, session: Session, request: Request, actor: Caller,
                          body: NoteIn | None = None) -> CampaignOut:
    campaign = await lifecycle.reject(session, campaign_id, actor, body.note if body else None)
    return await _out(session, request, campaign)


@router.post("/{campaign_id}/preview", response_model=PreviewOut, dependencies=[Reader],
             summary="Render one channel's content for one contact, as the send would")
async def preview_campaign(campaign_id: Id, body: PreviewIn, session: Session) -> PreviewOut:
    content = await definitions.preview(session, campaign_id, body.contact_id, body.channel, body.variant)
    return PreviewOut(channel=body.channel, content=content)


@router.get("/{campaign_id}/transitions", response_model=list[TransitionOut], dependencies=[Reader],
            summary="The campaign's lifecycle moves: from, to, who (key id and name), when")
async def list_transitions(campaign_id: Id, session: Session, after: Cursor = 0,
                           limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[TransitionOut]:
    rows = await lifecycle.transitions(session, campaign_id, after_id=after, limit=limit)
    return [TransitionOut(id=t.id, from_status=t.from_status, to_status=t.to_status, key_id=t.key_id,
                          key_name=t.key_name, note=t.note, at=t.at) for t in rows]


async def _signal(client: Client, workflow_id: str, signal: object) -> None:
    try:
        await client.get_workflow_handle(workflow_id).signal(signal)  # type: ignore[arg-type]
    except RPCError as exc:  # the run already ended: its finish step reads the campaign's status
        if "already completed" not in exc.message and "not found" not in exc.message:
            raise HTTPException(503, f"Temporal refused the signal: {exc.message}.") from exc


async def _steer(campaign_id: int, session: Session, request: Request, client: Client, target: CampaignStatus,
                 signal: object, actor: Actor) -> CampaignOut:
    campaign, run = await runs.steer(session, campaign_id, target, actor)
    if campaign.recurrence is not None:
        handle = client.get_schedule_handle(occurrences.schedule_id(campaign.id))
        paused = target is CampaignStatus.PAUSED
        await _schedule_call("pause" if paused else "unpause", handle.pause(note="campaign paused") if paused
                             else handle.unpause(note="campaign resumed"))
    if run is not None:
        await _signal(client, run.workflow_id, signal)
    return await _out(session, request, campaign)


async def _start_workflow(client: Client, runtime: Runtime, campaign: Campaign, run: CampaignRun,
                          at: datetime | None) -> None:
    # Started inside the request's transaction: if Temporal refuses, the run row is rolled back.
    try:
        await client.start_workflow(
            CampaignWorkflow.run,
            _run_input(runtime, campaign, run_id=run.id, number=run.number, start_at=at.timestamp() if at else None),
            id=run.workflow_id, task_queue=TASK_QUEUE, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=kind("campaign", SearchAttributePair(CAMPAIGN_ID, str(campaign.id))),
            static_summary=f"Campaign #{campaign.id} {campaign.name[:80]!r}, run {run.number}: {campaign.channel}",
        )
    except WorkflowAlreadyStartedError as exc:
        raise HTTPException(409, f"Run {run.number} of campaign {campaign.id} is already started.") from exc
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the campaign run: {exc.message}. "
                                 "Check the worker and server.") from exc


def _run_input(runtime: Runtime, campaign: Campaign, *, run_id: int, number: int = 0, start_at: float | None = None,
               recurring: bool = False) -> CampaignRunInput:
    return CampaignRunInput(
        campaign_id=campaign.id, run_id=run_id, number=number, recurring=recurring, start_at=start_at,
        batch_size=paced_batch_size(runtime.settings.campaign_batch_size, campaign.max_per_second),
        window=runtime.settings.campaign_window, max_per_second=campaign.max_per_second,
        local_time=campaign.local_time, default_zone=campaign.timezone)


async def _create_schedule(client: Client, runtime: Runtime, campaign: Campaign, recurrence: Recurrence) -> None:
    """The campaign's Temporal Schedule: one CampaignWorkflow per occurrence (it opens its own numbered run); an
    occurrence due while the previous one still runs is skipped. Created inside the request's transaction: if
    Temporal refuses, the campaign stays as it was."""
    label = kind("campaign", SearchAttributePair(CAMPAIGN_ID, str(campaign.id)))
    spec = ScheduleSpec(
        cron_expressions=[recurrence.cron] if recurrence.cron else [],
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=recurrence.every_seconds))]
        if recurrence.every_seconds else [],
        time_zone_name=recurrence.timezone, start_at=recurrence.start, end_at=recurrence.until)
    action = ScheduleActionStartWorkflow(
        CampaignWorkflow.run, _run_input(runtime, campaign, run_id=0, recurring=True),
        id=occurrences.occurrence_workflow_id(campaign.id), task_queue=TASK_QUEUE, typed_search_attributes=label,
        static_summary=f"Campaign #{campaign.id} {campaign.name[:80]!r}, an occurrence: {campaign.channel}")
    try:
        await client.create_schedule(
            occurrences.schedule_id(campaign.id),
            Schedule(action=action, spec=spec, policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
                     state=ScheduleState(note=f"Campaign #{campaign.id} {campaign.name[:80]!r}: "
                                              f"{recurrence.describe()}")),
            search_attributes=label)
    except ScheduleAlreadyRunningError as exc:
        raise HTTPException(409, f"Campaign {campaign.id} already has a schedule.") from exc
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to create the campaign's schedule: {exc.message}.") from exc


async def _schedule_call(what: str, call: Awaitable[None]) -> None:
    """Delete, pause or unpause the campaign's schedule (one already gone is fine: nothing more will start)."""
    try:
        await call
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise HTTPException(503, f"Temporal refused to {what} the campaign's schedule: {exc.message}.") from exc
