"""Shopify webhook payloads and a signed POST, shared by the webhook tests."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from services.orders.tests.conftest import Env

SHOP = "demo-shop.myshopify.com"
OTHER_SHOP = "other-shop.myshopify.com"


ORDER: dict[str, Any] = {
    "id": 820982911946154508,
    "email": "Jon.Snow@Example.com",
    "created_at": "2026-11-20T10:15:00-05:00",
    "currency": "USD",
    "financial_status": "pending",
    "total_tax": "2.40",
    "total_shipping_price_set": {"shop_money": {"amount": "5.00", "currency_code": "USD"}},
    "customer": {"id": 115310627314723954, "email": "Jon.Snow@Example.com"},
    "line_items": [
        {
            "id": 866550311766439020,
            "sku": "IPOD-342-N",
            "title": "IPod Nano",
            "quantity": 2,
            "price": "19.99",
            "total_discount": "1.00",
            "price_set": {"shop_money": {"amount": "19.99", "currency_code": "USD"}},
        },
        {
            "id": 141249953214522974,
            "sku": "",
            "title": "Gift wrap",
            "quantity": 1,
            "price": "3.50",
            "total_discount": "0.00",
        },
    ],
}
PAID: dict[str, Any] = {**ORDER, "financial_status": "paid"}
FULFILMENT: dict[str, Any] = {
    "id": 255858046,
    "order_id": ORDER["id"],
    "status": "success",
    "tracking_company": "USPS",
    "tracking_number": "9400111899223197428490",
    "tracking_url": "https://tools.usps.com/x",
}


async def post(
    env: Env,
    topic: str,
    payload: Any,
    *,
    signature: str | None = None,
    raw: bytes | None = None,
    shop: str = SHOP,
) -> tuple[int, dict[str, Any]]:
    body = raw if raw is not None else orjson.dumps(payload)
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Hmac-Sha256": env.shopify.sign(body) if signature is None else signature,
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "Content-Type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.webhook_url, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()
