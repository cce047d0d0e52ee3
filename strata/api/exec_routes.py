"""`/tenants/{t}/apps/{a}/instances/{i}/exec`: a command in an instance's container, over a WebSocket (as
Kubernetes does it). Binary frames carry the bytes: to the command as they come, from it with a first byte
saying the stream (1 stdout, 2 stderr). Text frames carry control: `{"resize": [w, h]}` and `{"eof": true}` in,
`{"exit": CODE}` out, last. When the client goes, the command is ended: the engine would let it run on. A command
that cannot start (its node's engine not reached, or refusing) closes the socket once open, with the reason: a
close before it opens reaches the client as a bare 403."""

import asyncio
import contextlib
import json
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from sqlalchemy import Engine

from hosting.paas.runtime import EngineError, ExecSession
from strata.api.deps import DbEngine, Engines, authorize
from tenants import apps, audit, db, roles, tokens
from tenants.errors import DomainError, Forbidden

router = APIRouter(tags=["apps"])

DEFAULT_COMMAND = ["/bin/sh"]
UNAUTHORIZED, FORBIDDEN, NOT_FOUND, FAILED = 4401, 4403, 4404, 4500  # WebSocket close codes: 4000-4999 are ours
MAX_REASON_BYTES = 123  # of a close frame's reason (RFC 6455: 125 bytes of payload, the code's 2 among them)


@router.websocket(roles.EXEC[1])
async def exec_in_instance(
    websocket: WebSocket,
    engine: DbEngine,
    reach: Engines,
    tenant: str,
    app: str,
    instance: str,
    cmd: Annotated[list[str], Query()] = DEFAULT_COMMAND,
    tty: bool = False,
) -> None:
    token = websocket.headers.get("authorization", "").removeprefix("Bearer ").strip()
    found = await asyncio.to_thread(_find, engine, token, tenant, app, instance, cmd)
    if isinstance(found, int):
        await websocket.close(code=found)
        return
    node, container_id = found
    try:
        session = await reach.runtime(node).exec(container_id, cmd, tty=tty)
    except EngineError as exc:
        await websocket.accept()
        await websocket.close(code=FAILED, reason=close_reason(str(exc)))
        return
    await websocket.accept()
    await _bridge(websocket, session)


def close_reason(message: str) -> str:
    """`message` cut to what a close frame carries, on a character's edge."""
    return message.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def _find(engine: Engine, token: str, tenant: str, app: str, instance: str, cmd: list[str]) -> tuple[str, str] | int:
    """(node, container) of the instance if the token may reach it; else a close code. Audited."""
    with db.session(engine) as session:
        principal = tokens.authenticate(session, token)
        if principal is None:
            return UNAUTHORIZED
        try:
            authorize(principal, *roles.EXEC, "exec in instance", tenant)
            row = apps.describe(session, tenant, app)
        except Forbidden:
            return FORBIDDEN
        except DomainError:
            return NOT_FOUND
        match = next((i for i in row.instances if i.id == instance), None)
        if match is None:
            return NOT_FOUND
        audit.record(session, principal.actor, "instance.exec", tenant, app=app, instance=instance, command=cmd)
        session.commit()
        return match.node, match.container_id


async def _bridge(websocket: WebSocket, session: ExecSession) -> None:
    async def output() -> None:
        while (piece := await session.read()) is not None:
            stream, data = piece
            await websocket.send_bytes(bytes([stream]) + data)

    async def input_() -> None:
        """Returns when the client goes."""
        while (message := await websocket.receive())["type"] != "websocket.disconnect":
            if message.get("bytes"):
                await session.write(message["bytes"])
            elif message.get("text"):
                control = json.loads(message["text"])
                if "resize" in control:
                    await session.resize(*control["resize"])
                if control.get("eof"):
                    await session.close_input()

    writing, reading = asyncio.ensure_future(output()), asyncio.ensure_future(input_())
    try:
        await asyncio.wait([writing, reading], return_when=asyncio.FIRST_COMPLETED)
        if reading.done() or writing.exception() is not None:  # the client went away before the command ended
            raise WebSocketDisconnect()
        code = None
        for _ in range(50):  # the engine records the exit a moment after the output ends
            if (code := await session.exit_code()) is not None:
                break
            await asyncio.sleep(0.02)
        await websocket.send_text(json.dumps({"exit": code if code is not None else 255}))
        await websocket.close()
    except (WebSocketDisconnect, RuntimeError):
        await session.kill()
    finally:
        for task in (writing, reading):
            task.cancel()
        await asyncio.gather(writing, reading, return_exceptions=True)  # collected: no failure goes unretrieved
        with contextlib.suppress(Exception):
            await session.kill()
