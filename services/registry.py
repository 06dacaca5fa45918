"""Every service of the suite, one line each (see shared/service.py and README "Adding a
service"). `make run`, the test database template, the `crm` CLI, the benchmarks and the
deploy tests follow this list."""

from __future__ import annotations

from services.contacts.spec import SPEC as CONTACTS
from services.notifications.spec import SPEC as NOTIFICATIONS
from services.orders.spec import SPEC as ORDERS
from services.segmentation.spec import SPEC as SEGMENTATION
from shared.service import ServiceSpec

SERVICES: tuple[ServiceSpec, ...] = (CONTACTS, ORDERS, SEGMENTATION, NOTIFICATIONS)
