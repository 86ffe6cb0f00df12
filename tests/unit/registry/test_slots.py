"""Turns at one registry: a slot handed to a waiter that gave up is passed on, never lost."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY as PROMETHEUS

from webhook.registry.slots import Slots


def metric(name: str, **labels: str) -> float:
    return PROMETHEUS.get_sample_value(name, labels) or 0.0


async def test_a_slot_is_never_lost_to_a_cancelled_waiter() -> None:
    slots = Slots("slots-test", 1)
    await slots.acquire("a")
    b = asyncio.create_task(slots.acquire("b"))
    c = asyncio.create_task(slots.acquire("c"))
    d = asyncio.create_task(slots.acquire("d"))
    await asyncio.sleep(0)
    b.cancel()  # gives up while waiting
    await asyncio.sleep(0)
    slots.release()  # a's slot: b is gone, c is next
    c.cancel()  # c is handed the slot and cancelled before it runs: it passes the slot on to d
    await asyncio.gather(b, c, return_exceptions=True)
    await asyncio.wait_for(d, 1)
    slots.release()
    await asyncio.wait_for(slots.acquire("e"), 1)  # free again, no waiter left behind
    assert metric("modelpin_registry_lookups_waiting", registry="slots-test") == 0
