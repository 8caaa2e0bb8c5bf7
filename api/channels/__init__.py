"""Channels' HTTP API: provider webhooks and tracking links, the in-app inbox, preferences, suppressions, a
contact's deliveries and the hosted unsubscribe page; `router` joins them for the app."""


from __future__ import annotations

from fastapi import APIRouter

from api.channels import inbox, preferences, unsubscribe, webhooks

router = APIRouter()
for part in (webhooks, inbox, preferences, unsubscribe):
    router.include_router(part.router)
