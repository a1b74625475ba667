"""``GET /api/runs/{id}/events``: a run's event stream as Server-Sent Events (read-only: the
viewer role may read it).

Each SSE message is one `tether.engine.events.RunEvent`: ``id`` is its position in the run's
stream, ``event`` its kind, ``data`` the event as JSON. A client that reconnects with the
``Last-Event-ID`` header (browsers' `EventSource` does so by itself), or ``?after=ID``, gets
every event after that one — completed events are kept once across worker takeovers, so
nothing is lost or repeated. The stream ends after the run's ``finished`` event; a client that
resumes after it gets 204 No Content, which tells an `EventSource` to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from tether.engine.events import RunEvent, read_events_or_end
from tether.server.rendering import tether_app_of

router = APIRouter(tags=["runs"])
READ_ONLY = True
"""Every route here only reads: the viewer role is enough (for the auth layer)."""
POLL_SECONDS = 0.01
"""How often a live stream looks for new events (a model's text deltas arrive within it)."""
KEEPALIVE_SECONDS = 15.0


def sse_message(event: RunEvent) -> str:
    """One SSE message for `event`."""
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.as_dict())}\n\n"


@router.get("/api/runs/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}},
                       204: {"description": "Resumed after the run's finished event"}})
async def run_events(
    request: Request,
    run_id: str,
    after: int | None = Query(None, ge=0, description="Resume after this event id."),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> Response:
    """The run's events as Server-Sent Events, live until the run finishes."""
    app = tether_app_of(request)
    start = after if after is not None else _event_id(last_event_id)
    first = await app.run_events_async(run_id, after=start)  # UnknownRun: 404 before streaming
    if not first and (await read_events_or_end(app.store, run_id, after=start))[1]:
        return Response(status_code=204)  # resumed after the run's end: nothing will follow

    async def stream() -> AsyncIterator[str]:
        position = start
        pending = first
        idle = 0
        quiet_since = time.monotonic()
        yield "retry: 1000\n\n"
        while True:
            for event in pending:
                position = event.id
                yield sse_message(event)
                if event.kind == "finished":
                    return
            if pending:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            idle = 0 if pending else idle + 1
            if not pending:
                await asyncio.sleep(POLL_SECONDS)
            # The run record only now and then: a finished run's own event is usually there.
            pending, past_end = await read_events_or_end(app.store, run_id, after=position,
                                                         check_finished=idle % 25 == 24)
            if past_end:
                return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event_id(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return 0
    return int(value.strip())
