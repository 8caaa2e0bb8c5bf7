"""The ledger's SQLAlchemy models: points programs. Accounts, postings, entries, buckets and holds are written
set-based (store.ledger.postings) and read with SQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Identity, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from domain.ledger.postings import ExpiryPolicy
from store.base import Base, created_at


class Program(Base):
    __tablename__ = "ledger_programs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    unit: Mapped[str] = mapped_column(Text, default="points")
    expiry_months: Mapped[int | None] = mapped_column(Integer)
    retention_months: Mapped[int] = mapped_column(Integer, default=12)
    created_at: Mapped[datetime] = created_at()

    @property
    def policy(self) -> ExpiryPolicy:
        return ExpiryPolicy(self.expiry_months)
