"""The health check's answer: one field per dependency, the same body whether all is well (200) or not (503)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="`ok` when every dependency answered, else `degraded`.")
    database: str = Field(description="`ok`, or `error: ...` saying why Postgres did not answer.")
    temporal: str = Field(description="`ok`, or `unreachable`.")
