"""Cross-cutting dependencies: the request's database session, API-key scopes and segment index."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.errors import RETRY_AFTER
from api.limits import limits
from api.runtime import Runtime
from domain.keys import Scope, allows, parse_key
from store import keys
from store.segments.index import PostgresSegmentIndex, SegmentIndex

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer nk_...`")
basic = HTTPBasic(auto_error=False, description="Segment-style write key as the Basic username")


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back on any error."""
    async with runtime(request).sessions() as s, s.begin():
        yield s


async def temporal(request: Request) -> Client:
    client: Client | None = await request.app.state.temporal()
    if client is None:
        raise HTTPException(503, "Temporal is not reachable; start it (nudge dev) or check TEMPORAL_ADDRESS, then "
                                 "send the request again.", headers={"Retry-After": RETRY_AFTER})
    return client


Session = Annotated[AsyncSession, Depends(session, scope="function")]  # commit before the response is sent
Temporal = Annotated[Client, Depends(temporal)]


class KnownKeys:
    """Valid keys remembered for `ttl` seconds per process: without it every request pays a connection, a
    BEGIN, a select and a ROLLBACK for its key — more than the cheapest endpoint's own work. Only keys found
    valid are remembered (an unknown or revoked key is looked up every time, so a flood of bad keys cannot fill
    it), and a revoked key stops working within `ttl` seconds in every process. Each request, remembered or not,
    counts against its key's rate limit."""

    unknown = "This API key is unknown or revoked; create a new one with `nudge keys create`."
    challenge = "Bearer"  # the 401's WWW-Authenticate scheme

    def __init__(self, ttl: float = 1.0, max_keys: int = 10_000) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self.valid: dict[str, tuple[float, list[Scope], str]] = {}  # secret -> (monotonic expiry, scopes, prefix)

    def refusal(self, granted: list[Scope], scope: Scope) -> str:
        return f"This API key has scope(s) [{', '.join(granted)}]; this endpoint needs the `{scope}` scope."

    async def scopes(self, request: Request, secret: str, scope: Scope) -> list[Scope]:
        """The key's scopes if it may call an endpoint that needs `scope`: 401, 403 or 429 otherwise."""
        now = time.monotonic()
        cached = self.valid.get(secret)
        if cached is not None and cached[0] > now:
            granted, prefix = cached[1], cached[2]
        else:
            async with runtime(request).sessions() as s:
                found = await keys.find_scopes(s, secret)
            if found is None:
                self.valid.pop(secret, None)
                raise HTTPException(401, self.unknown, headers={"WWW-Authenticate": self.challenge})
            granted, prefix = found, parse_key(secret).prefix  # type: ignore[union-attr]  # found: well-formed
            if len(self.valid) >= self.max_keys:
                self.valid.clear()
            self.valid[secret] = (now + self.ttl, granted, prefix)
        rate = limits(request).ingest if scope is Scope.INGEST else limits(request).api
        rate.check(prefix)
        if not allows(granted, scope):
            raise HTTPException(403, self.refusal(granted, scope))
        return granted


KNOWN_KEYS = KnownKeys()
NO_KEY = ("Send an API key as `Authorization: Bearer <key>` (create one with `nudge keys create`).")


def require_scope(scope: Scope) -> Callable[..., Awaitable[list[Scope]]]:
    async def check(
        request: Request,
        token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        basic_auth: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    ) -> list[Scope]:
        # The Authorization header only: the dashboards' session cookie is no API credential (dashboards/routes.py).
        secret = (token.credentials if token else None) or (basic_auth.username if basic_auth else None)
        if not secret:
            raise HTTPException(401, NO_KEY, headers={"WWW-Authenticate": "Bearer"})
        return await KNOWN_KEYS.scopes(request, secret, scope)

    return check


Admin = Depends(require_scope(Scope.ADMIN))
Reader = Depends(require_scope(Scope.READ))
Ingest = Depends(require_scope(Scope.INGEST))


def segment_index(request: Request) -> SegmentIndex:
    """Elasticsearch when ELASTICSEARCH_URL is set, else Postgres; one per app."""
    index = getattr(request.app.state, "segment_index", None)
    if index is None:
        url = request.app.state.runtime.settings.elasticsearch_url
        if url:  # the Elasticsearch client is imported only where it is configured (it takes ~0.3 s)
            from store.segments.es import ElasticsearchSegmentIndex

            index = ElasticsearchSegmentIndex(url)
        else:
            index = PostgresSegmentIndex()
        request.app.state.segment_index = index
    return index  # type: ignore[no-any-return]
