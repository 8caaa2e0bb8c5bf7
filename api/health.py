"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from store.db import ping

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and dependency check")
async def healthz(request: Request) -> dict[str, str]:
    checks = {"status": "ok", "database": "ok", "temporal": "ok"}
    try:
        async with request.app.state.runtime.sessions() as s:
            await ping(s)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks.update(status="degraded", database=f"error: {exc.__class__.__name__}")
    if await request.app.state.temporal() is None:
        checks.update(status="degraded", temporal="unreachable")
    return checks


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
