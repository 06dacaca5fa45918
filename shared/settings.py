"""Configuration from environment variables only (12-factor). Documented in README.md."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = None  # unset: start/attach the embedded PostgreSQL (dev only)
    crm_pgdata: str = "/var/tmp/crm-suite/pgdata"  # embedded server's data directory
    grpc_host: str = "0.0.0.0"  # noqa: S104 - a server listens on all interfaces in a pod
    grpc_port: int = 50051
    metrics_port: int = 9464  # 0 disables /metrics
    log_level: str = "INFO"
    log_format: str = "json"  # json | console
    eventstore_backend: str = "postgres"  # postgres | eventstoredb
    eventstore_url: str | None = None  # esdb://host:2113?Tls=false for the eventstoredb backend
    db_pool_size: int = 20
    shutdown_grace_seconds: float = 20.0
    projection_batch_size: int = 500
