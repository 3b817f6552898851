"""A transport call and cancellation (``BaseDriver._timed`` and ``connect``): the caller's own
cancel is always raised, even when the library's ``wait_for`` drops it as the reply lands;
a cancel the library makes of its own request's future is a lost link, not a cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from modulecontrol.descriptors import ModuleInstance, builtin_types
from modulecontrol.drivers import BaseDriver, Disconnected, TagInfo, TagValue


class _Library(BaseDriver):
    """A transport whose request waits for its reply future the way the protocol libraries
    do (``asyncio.wait_for``); the test answers, or cancels, that future."""

    transport = "serial"

    def __init__(self) -> None:
        inst = ModuleInstance.model_validate(
            {"tag": "S1", "type": "SyringePump", "endpoint": {"protocol": "serial",
                                                               "port": "/dev/null"}})
        super().__init__(builtin_types().get("SyringePump"), inst)
        self.reply: asyncio.Future[float] | None = None
        self.sent = asyncio.Event()

    async def _connect(self) -> None:
        await self._request()

    async def _close(self) -> None:
        return None

    async def _request(self) -> float:
        self.reply = asyncio.get_running_loop().create_future()
        self.sent.set()
        return await asyncio.wait_for(self.reply, 30)

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        value = await self._request()
        return {i.name: TagValue(value) for i in infos}

    async def _write(self, info: TagInfo, value: Any) -> None:
        await self._request()


def _tag(drv: BaseDriver) -> str:
    return next(n for n, i in drv.tags.items() if i.readable)


async def test_a_cancel_that_comes_with_the_reply_is_still_raised() -> None:
    drv = _Library()
    task = asyncio.create_task(drv.read([_tag(drv)]))
    await drv.sent.wait()
    assert drv.reply is not None
    drv.reply.set_result(1.0)  # the reply lands ...
    task.cancel()  # ... and the cancel in the same loop iteration: wait_for returns the reply
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_request_the_library_cancels_is_a_lost_link() -> None:
    drv = _Library()
    task = asyncio.create_task(drv.read([_tag(drv)]))
    await drv.sent.wait()
    assert drv.reply is not None
    drv.reply.cancel()  # the library drops its own request (its connection was reset)
    with pytest.raises(Disconnected, match="the request was dropped by the serial client"):
        await task
    assert drv.health().errors == 1


async def test_the_callers_own_cancel_stays_a_cancel() -> None:
    drv = _Library()
    tag = next(n for n, i in drv.tags.items() if i.writable and i.assembly.kind == "number")
    task = asyncio.create_task(drv.write(tag, 1.0))
    await drv.sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_connect_the_library_drops_is_a_lost_link() -> None:
    drv = _Library()
    task = asyncio.create_task(drv.connect())
    await drv.sent.wait()
    assert drv.reply is not None
    drv.reply.cancel()
    with pytest.raises(Disconnected, match="the connect was dropped by the serial client"):
        await task
    assert not drv.health().connected
