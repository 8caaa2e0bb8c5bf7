"""Journey routes: define, validate, publish, pause and inspect journeys."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
