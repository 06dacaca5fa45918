"""PostgreSQL plumbing shared by the event store and every read model."""

from shared.db.migrate import migrate, pending
from shared.db.pool import connect_pool

__all__ = ["connect_pool", "migrate", "pending"]
