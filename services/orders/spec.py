"""The orders service, declared once (shared/service.py)."""

from __future__ import annotations

import os

from services.orders import app
from shared.service import DevRole, ServiceSpec

WEBHOOK_PORT = 8080  # make run
CONTACTS_TARGET = "127.0.0.1:50051"  # the contacts serve role under make run
# Development only: signs test webhooks (X-Shopify-Hmac-Sha256); SHOPIFY_WEBHOOK_SECRET set in
# the environment replaces it, and the table then does not print it.
DEV_SHOPIFY_WEBHOOK_SECRET = "dev-shopify-webhook-secret"  # noqa: S105
# The shop whose webhooks make run takes; SHOPIFY_SHOP_DOMAINS (comma-separated) replaces it.
DEV_SHOPIFY_SHOP_DOMAIN = "dev-shop.myshopify.com"


def _serve() -> DevRole:
    secret = os.environ.get("SHOPIFY_WEBHOOK_SECRET") or DEV_SHOPIFY_WEBHOOK_SECRET
    shown = secret if secret == DEV_SHOPIFY_WEBHOOK_SECRET else "$SHOPIFY_WEBHOOK_SECRET"
    shops = os.environ.get("SHOPIFY_SHOP_DOMAINS") or DEV_SHOPIFY_SHOP_DOMAIN
    return DevRole(
        50052,
        9466,
        env={
            "CONTACTS_TARGET": CONTACTS_TARGET,
            "WEBHOOK_PORT": str(WEBHOOK_PORT),
            "SHOPIFY_WEBHOOK_SECRET": secret,
            "SHOPIFY_SHOP_DOMAINS": shops,
        },
        http=(
            f"POST http://127.0.0.1:{WEBHOOK_PORT}/webhooks/shopify\nsecret: {shown}\nshop: {shops}"
        ),
    )


SPEC = ServiceSpec(
    name="orders",
    settings=app.OrdersSettings,
    roles={"serve": app.serve, "project": app.project},
    projections=lambda: app.PROJECTIONS,
    dev={"serve": _serve(), "project": DevRole(50152, 9467)},
    api=app.OrdersApi,
)
