"""The pause between two passes of a level-triggered loop (the reconciler's, the VM nodes'): it ends when the
next pass is due, when one is asked for (`wake`), or when the loop is stopping."""

import asyncio


async def pause(wake: asyncio.Event, stopping: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
