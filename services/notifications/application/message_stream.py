"""The message aggregate: a message's stream (``message-<message_id>``) folded into its trail,
and the namespace its ids derive from. SendMessage, SendTestMessage, the dispatcher, tracking
and the intake all append to it."""

from __future__ import annotations

import uuid

from services.notifications.domain import decision as d
from services.notifications.domain import trail
from shared.application.commands import Aggregate

NS = uuid.UUID("0c3f5a52-6d0e-4f4e-9a57-3b1f2f9c7d41")  # never change: retries would repeat

MESSAGE: Aggregate[trail.Trail] = Aggregate(
    namespace=NS,
    stream_of=d.stream_of,
    fold=lambda _id, rows: trail.fold(rows),
    evolve=trail.evolve,
    missing="MESSAGE_NOT_FOUND",
    id_field="message_id",
)
