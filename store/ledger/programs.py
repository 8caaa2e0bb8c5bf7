"""Points programs: a currency with its expiry and retention policy. Create, get, list."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from store.ledger.models import Program


async def create_program(session: AsyncSession, *, name: str, unit: str, expiry_months: int | None,
                         retention_months: int) -> Program:
    program = Program(name=name, unit=unit, expiry_months=expiry_months, retention_months=retention_months)
    try:
        async with session.begin_nested():
            session.add(program)
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a program named {name!r} already exists") from exc
    return program


async def get_program(session: AsyncSession, program_id: int) -> Program:
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"points program {program_id} does not exist")
    return program


async def list_programs(session: AsyncSession) -> Sequence[Program]:
    return (await session.scalars(select(Program).order_by(Program.id))).all()


async def program_ids(session: AsyncSession) -> list[int]:
    """Every program's id, in order."""
    return list(await session.scalars(select(Program.id).order_by(Program.id)))
