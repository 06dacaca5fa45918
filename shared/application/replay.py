"""Retries return the first answer (AIP-155).

Event ids derive from the request id, so a retried command finds its own events and answers
with the state they produced. ``first_answer`` makes that hold for every outcome: an error (a
domain error, a lost optimistic-concurrency race, an event id already stored) is returned only
after checking that the same request did not already succeed — a concurrent or earlier attempt
of it is exactly what makes a retry fail (CART_CONVERTED, CONTACT_MERGED, IDENTITY_TAKEN).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.domain.errors import DomainError
from shared.eventstore import DuplicateEventId, WrongExpectedVersion

T = TypeVar("T")
# What a retry of an already executed request may run into because of its own first attempt.
REPLAY_CHECKED = (DomainError, WrongExpectedVersion, DuplicateEventId)


async def first_answer(run: Awaitable[T], earlier: Callable[[], Awaitable[T | None]]) -> T:
    """``run``'s result; if it fails, the earlier execution's result when there was one."""
    try:
        return await run
    except REPLAY_CHECKED:
        if (done := await earlier()) is not None:
            return done
        raise
