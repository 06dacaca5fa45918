"""PostgreSQL plumbing shared by the event store and every read model."""

from shared.db.migrate import migrate
from shared.db.pool import connect_pool

__all__ = ["connect_pool", "migrate"]
