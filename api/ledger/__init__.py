"""The points ledger's HTTP API, one router per part: programs, postings, accounts, reconciliation, expiry runs,
risk controls and redemptions; `router` joins them for the app."""

from __future__ import annotations

from fastapi import APIRouter

from api.ledger import accounts, expiry, postings, programs, reconcile, redemptions, risk

router = APIRouter()
for part in (programs, postings, accounts, reconcile, expiry, risk, redemptions):
    router.include_router(part.router)
