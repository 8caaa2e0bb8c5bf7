"""Quotes and orders: `POST /v1/pricing/quote` prices a cart with no side effects; `POST /v1/orders` locks a quote
(reserves coupons, stock, budget and points) and starts one OrderWorkflow per order; confirm and cancel settle it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as Refusal
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import errors
from api.deps import KNOWN_KEYS, Admin, Reader, Session, Temporal, runtime
from api.params import Id
from api.schemas.promotions import ORDER_ID, LineIn, OrderIn, OrderOut, OrderPage, QuoteIn, QuoteOut
from domain.errors import DomainError
from domain.keys import Scope as KeyScope
from domain.promotions.model import Line
from store.promotions import orders
from store.promotions.cache import RULES
from workflows.promotions.orders import TASK_QUEUE, OrderInput, OrderWorkflow, workflow_id
from workflows.schedules import kind

router = APIRouter(tags=["promotions"])
OrderId = Annotated[str, Path(pattern=ORDER_ID)]


def _lines(lines: list[LineIn]) -> tuple[Line, ...]:
    return tuple(Line(x.sku, x.category, x.unit_price, x.quantity) for x in lines)


def _request(body: QuoteIn) -> orders.QuoteRequest:
    return orders.QuoteRequest(_lines(body.lines), contact_id=body.contact_id, coupons=tuple(body.coupons),
                               points=body.points, shipping=body.shipping, channel=body.channel)


def _out(order: orders.Order) -> OrderOut:
    return OrderOut(**{k: v for k, v in asdict(order).items() if k != "program_id"},
                    workflow_id=workflow_id(order.order_id))


QUOTE_PATH = "/v1/pricing/quote"


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[None]:
    """What quotes hold while the app runs: the rule-set cache's listener (changes made through other API
    processes) and the quotes' own connections (store/promotions/orders.py:quote_pool)."""
    url = app.state.runtime.settings.database_url or ""
    listener = asyncio.create_task(RULES.listen(url))
    app.state.quotes = orders.quote_pool(url)
    await app.state.quotes.open(wait=False)  # a database still starting is waited for by the first quote
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await app.state.quotes.close()


async def _priced(request: Request, body: QuoteIn) -> bytes:
    sessions = runtime(request).sessions
    rules = await RULES.current(sessions)
    # No request transaction: a quote changes nothing and reads its facts in one statement (one round trip).
    pool = getattr(request.app.state, "quotes", None)  # None: an app run without its lifespan
    result = (await orders.quote_pooled(pool, rules, _request(body), now=datetime.now(UTC)) if pool is not None
              else await orders.quote_now(sessions, rules, _request(body), now=datetime.now(UTC)))
    # Serialised once, straight from the engine's dataclasses by orjson (the shape is QuoteOut's): a large cart's
    # quote is big, and dataclasses.asdict alone cost as much as pricing it.
    return orjson.dumps(result)


@router.post(QUOTE_PATH, response_model=QuoteOut, dependencies=[Reader],
             summary="Price a cart: the best valid combination, per-line allocation, and why others did not apply")
async def quote(body: QuoteIn, request: Request) -> Response:
    return Response(await _priced(request, body), media_type="application/json")


def _bearer(scope: Scope) -> str | None:
    """The Bearer key as FastAPI's HTTPBearer reads it (the rest of the header after the first space)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, secret = value.decode("latin-1").partition(" ")
            return (secret or None) if kind.lower() == "bearer" else None
    return None


class QuoteFastPath:
    """`POST /v1/pricing/quote` answered straight from ASGI, as api/events.py answers the tracking calls: route
    matching, dependency solving and the response model cost more CPU than the facts query, so a quote with a
    Bearer key and a valid body skips them — the same key check (api.deps.KNOWN_KEYS), the same body cap and JSON
    checks (installed behind api/hygiene.py), one `model_validate_json`, the same problem+json errors and metrics
    label. Anything else (no key, Basic auth, an invalid body) is handed to the FastAPI route with the body it
    sent, so its answers are the route's own; the route is also the OpenAPI spec."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == QUOTE_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != QUOTE_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"] = self.route, self.route.endpoint  # metrics label; hygiene's body cap
        try:
            body = await _body(receive)
        except Refusal as exc:  # api.hygiene: too large, or JSON it refuses
            await errors.http_problem(exc)(scope, receive, send)
            return
        if body is None:
            return  # the client went away
        secret = _bearer(scope)
        parsed = None
        if secret is not None:
            try:
                parsed = QuoteIn.model_validate_json(body)
            except ValidationError:
                pass
        if parsed is None or secret is None:
            await self.app(scope, _replay(body, receive), send)
            return
        request = Request(scope, receive)
        try:
            await KNOWN_KEYS.scopes(request, secret, KeyScope.READ)
            answer = await _priced(request, parsed)
        except DomainError as exc:
            await errors.domain_problem(exc)(scope, receive, send)
            return
        except Refusal as exc:  # 401, 403, 429
            await errors.http_problem(exc)(scope, receive, send)
            return
        except Exception as exc:  # the app's handlers are behind this middleware: outages answered here too
            if (outage := errors.outage_problem(exc)) is None:
                raise
            await outage(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})


async def _body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The request's receive channel again, its body already read."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


@router.post("/v1/orders", response_model=OrderOut, status_code=201, dependencies=[Admin],
             summary="Lock a quote: reserve coupons, stock and points; the same id and body returns the same order",
             responses={200: {"model": OrderOut, "description": "This order already exists: its current state"}})
async def place_order(body: OrderIn, session: Session, client: Temporal, request: Request,
                      response: Response) -> OrderOut:
    rules = await RULES.current(runtime(request).sessions)
    order, created = await orders.place_order(session, rules, body.order_id, _request(body), now=datetime.now(UTC),
                                              hold_seconds=body.hold_seconds)
    if not created:
        response.status_code = 200
        return _out(order)
    try:
        # Started inside the request's transaction: if Temporal refuses, the order and its reservations roll back.
        await client.start_workflow(
            OrderWorkflow.run, OrderInput(order.order_id, body.hold_seconds), id=workflow_id(order.order_id),
            task_queue=TASK_QUEUE, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=kind("order"),
            static_summary=f"Order: {order.total} to pay, {order.discount} off, held {body.hold_seconds}s")
    except WorkflowAlreadyStartedError:
        pass
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the order: {exc.message}") from exc
    return _out(order)


@router.get("/v1/orders", response_model=OrderPage, dependencies=[Reader],
            summary="Orders, newest first, a page at a time; optionally one contact's or one status'")
async def list_orders(
    session: Session, contact_id: Id | None = None,
    status: Literal["pending", "confirmed", "cancelled", "expired"] | None = None,
    before: Annotated[str | None, Query(pattern=ORDER_ID, description="Return orders older than this order id "
                                                                      "(a page's `next_before`).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> OrderPage:
    found = await orders.list_orders(session, contact_id=contact_id, status=status, before=before, limit=limit)
    return OrderPage(items=[_out(o) for o in found], next_before=found[-1].order_id if len(found) == limit else None)


@router.get("/v1/orders/{order_id}", response_model=OrderOut, dependencies=[Reader],
            summary="An order: pending, confirmed, cancelled or expired")
async def get_order(order_id: OrderId, session: Session) -> OrderOut:
    return _out(await orders.get_order(session, order_id))


async def _signal(client: Temporal, order_id: str, outcome: str) -> None:
    try:
        await client.get_workflow_handle(workflow_id(order_id)).signal(OrderWorkflow.settled, outcome)
    except RPCError:
        pass  # the workflow already ended (or ends at its timeout): releasing a settled order changes nothing


@router.post("/v1/orders/{order_id}/confirm", response_model=OrderOut, dependencies=[Admin],
             summary="Confirm an order: coupons redeemed, stock used, points taken (again: no-op)")
async def confirm(order_id: OrderId, session: Session, client: Temporal) -> OrderOut:
    order = await orders.confirm(session, order_id, now=datetime.now(UTC))
    await _signal(client, order_id, "confirmed")
    return _out(order)


@router.post("/v1/orders/{order_id}/cancel", response_model=OrderOut, dependencies=[Admin],
             summary="Cancel a pending order: coupons, stock and points released (again: no-op)")
async def cancel(order_id: OrderId, session: Session, client: Temporal) -> OrderOut:
    order = await orders.release(session, order_id, now=datetime.now(UTC))
    await _signal(client, order_id, "cancelled")
    return _out(order)
