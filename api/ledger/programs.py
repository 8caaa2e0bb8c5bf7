"""Points programs: create, list and get (a currency with its expiry policy)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Admin, Reader, Session
from api.params import Id
from api.schemas.ledger import ProgramIn, ProgramOut
from store.ledger import programs

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


@router.post("/programs", response_model=ProgramOut, status_code=201, dependencies=[Admin],
             summary="Create a points program (a currency with its expiry policy)")
async def create_program(body: ProgramIn, session: Session) -> ProgramOut:
    program = await programs.create_program(session, name=body.name, unit=body.unit,
                                            expiry_months=body.expiry_months, retention_months=body.retention_months)
    return ProgramOut.model_validate(program)


@router.get("/programs", response_model=list[ProgramOut], dependencies=[Reader], summary="List points programs")
async def list_programs(session: Session) -> list[ProgramOut]:
    return [ProgramOut.model_validate(p) for p in await programs.list_programs(session)]


@router.get("/programs/{program_id}", response_model=ProgramOut, dependencies=[Reader], summary="Get a program")
async def get_program(program_id: Id, session: Session) -> ProgramOut:
    return ProgramOut.model_validate(await programs.get_program(session, program_id))
