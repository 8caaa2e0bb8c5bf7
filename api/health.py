"""Liveness, dependency health and Prometheus metrics."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.errors import RETRY_AFTER
from api.schemas.health import Health
from store.db import ping

router = APIRouter(tags=["operations"])
CHECK_SECONDS = 2.0  # a dependency that has not answered by then is down, as far as a caller can tell


@router.get("/healthz", summary="Liveness and dependency check", response_model=Health,
            responses={503: {"model": Health, "description": "A dependency is down; the body says which."}})
async def healthz(request: Request) -> JSONResponse:
    """200 when Postgres and Temporal both answer; 503 with Retry-After when either does not, naming it. Each
    check is bounded, so this answers within a few seconds whatever the dependencies do."""
    database, temporal = await asyncio.gather(_database(request), _temporal(request))
    down = database != "ok" or temporal != "ok"
    body = Health(status="degraded" if down else "ok", database=database, temporal=temporal)
    return JSONResponse(body.model_dump(), status_code=503 if down else 200,
                        headers={"Retry-After": RETRY_AFTER} if down else None)


async def _database(request: Request) -> str:
    try:
        async with asyncio.timeout(CHECK_SECONDS), request.app.state.runtime.sessions() as s:
            await ping(s)
    except TimeoutError:
        return f"error: no answer within {CHECK_SECONDS:g} s"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"error: {exc.__class__.__name__}"
    return "ok"


async def _temporal(request: Request) -> str:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            client = await request.app.state.temporal()
            serving = client is not None and await client.service_client.check_health(
                timeout=timedelta(seconds=CHECK_SECONDS))
    except Exception:  # noqa: BLE001 - a timeout or an RPC error: not reachable either way
        return "unreachable"
    return "ok" if serving else "unreachable"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
