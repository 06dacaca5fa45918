"""What OrdersService requests may hold, and their parts read into command inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm.orders.v1 import events_pb2 as epb
from services.orders.domain import money
from services.orders.domain.order import MAX_TEXT
from shared.grpckit.limits import Limits

DOMAIN = "orders.crm"
# Checked before anything else in every RPC (see the canvas's Limits section). Other strings:
# identifiers (*_id) 128, etag 32, page_token 1024, anything else 4096; lists 1000 items.
LIMITS = Limits(
    fields={
        "currency": 16,
        "sku": money.MAX_SKU,
        "name": money.MAX_NAME,
        "items[]": money.MAX_LINES,
        "lines[]": money.MAX_LINES,
        "email": 320,
        "phone": 64,
        "external_id": 255,
        **dict.fromkeys(
            ("external_ref", "payment_ref", "carrier", "tracking_number", "tracking_url", "reason"),
            MAX_TEXT,
        ),
    }
)
EARLIEST_PLACE_TIME = datetime(1970, 1, 1, tzinfo=UTC)
PLACE_TIME_AHEAD = timedelta(days=1)  # clocks differ; an order placed tomorrow does not


def item_in(i: epb.LineItem) -> dict[str, Any]:
    return {
        "sku": i.sku,
        "name": i.name,
        "quantity": i.quantity,
        "unit_price": i.unit_price,
        "discount": i.discount,
        "currency": i.currency,
    }
