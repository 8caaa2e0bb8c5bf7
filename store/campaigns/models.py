"""Campaigns' SQLAlchemy models: campaigns, their lifecycle transitions, runs and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from domain.campaigns import CampaignStatus
from store.base import Base, created_at


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text, default=CampaignStatus.DRAFT.value)
    created_by_key_id: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(Text)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    incentive: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    holdout_bp: Mapped[int] = mapped_column(Integer, default=0)
    conversion_event: Mapped[str | None] = mapped_column(Text)
    chain: Mapped[list[str]] = mapped_column(ARRAY(Text), default=lambda: ["email"])
    content: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    max_per_second: Mapped[int | None] = mapped_column(Integer)
    recurrence: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # domain/campaigns_timing.py:Recurrence
    local_time: Mapped[str | None] = mapped_column(Text)  # HH:MM on each recipient's clock
    timezone: Mapped[str] = mapped_column(Text, default="UTC")  # the zone of recipients without one
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class CampaignRun(Base):
    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    number: Mapped[int] = mapped_column(Integer)
    workflow_id: Mapped[str] = mapped_column(Text, unique=True)
    status: Mapped[str] = mapped_column(Text, default="starting")
    total: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a recurring run's occurrence
    error: Mapped[str | None] = mapped_column(Text)  # why a run did not send (status failed)


class Transition(Base):
    """One lifecycle move of a campaign, with who made it (append-only audit)."""

    __tablename__ = "campaign_transitions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    from_status: Mapped[str] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    key_id: Mapped[int | None] = mapped_column(BigInteger)
    key_name: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Delivery(Base):
    """One message to one contact. Partitioned by hash of contact id (see migration 0001)."""

    __tablename__ = "deliveries"

    contact_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    variant: Mapped[str | None] = mapped_column(Text)
    zone: Mapped[str | None] = mapped_column(Text)  # the contact's zone, snapshotted for a local-time run
    created_at: Mapped[datetime] = created_at()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
