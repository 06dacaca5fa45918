"""Configuration from environment variables only (12-factor). Documented in README.md."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.paging import DEV_SECRET


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = None  # unset: start/attach the embedded PostgreSQL (dev only)
    # true: a role applies the migrations it needs at start (dev, tests, compose); false: it waits
    # NOT_SERVING until `python -m services.migrate` has (the Kubernetes manifests' crm-migrate Job)
    migrate_on_start: bool = True
    crm_pgdata: str = "/var/tmp/crm-suite/pgdata"  # embedded server's data directory
    # Loopback by default: nothing is exposed until asked (the container image sets 0.0.0.0).
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464  # 0 disables /metrics
    grpc_max_message_bytes: int = 4 * 1024 * 1024  # requests and responses, each way
    # Calls of one method in flight per process (0: half the pool), and how long a call beyond
    # that waits for a slot before RESOURCE_EXHAUSTED.
    grpc_max_in_flight_per_method: int = 0
    grpc_queue_seconds: float = 1.0
    # serve roles: a statement running longer is cancelled (DEADLINE_EXCEEDED); 0 = no limit.
    # project roles run without one (long batches and rebuilds are normal there).
    db_statement_timeout_seconds: float = 5.0
    log_level: str = "INFO"
    log_format: str = "json"  # json | console
    eventstore_backend: str = "postgres"  # postgres | eventstoredb
    eventstore_url: str | None = None  # esdb://host:2113?Tls=false for the eventstoredb backend
    db_pool_size: int = 20
    shutdown_grace_seconds: float = 20.0
    projection_batch_size: int = 500
    # Signs page tokens (HMAC-SHA256); one value per deployment, shared by every replica.
    page_token_secret: str = DEV_SECRET
    # Who may call the gRPC APIs (shared/grpckit/auth.py, README "Calling the API"): the token
    # table, as text and/or a file (a mounted Secret), lines "<name> <role> <sha256 of token>".
    # It holds hashes only. A serve role refuses to start without one entry at least.
    crm_tokens: str = ""
    crm_tokens_file: str = ""
    # The bearer token this process presents when it calls another service (role "service").
    crm_service_token: str = ""
    # Optional TLS on the gRPC port: this process's certificate and key (PEM files), served and
    # presented when calling another service. With a CA file too, TLS is mutual: the server
    # requires client certificates signed by it and clients verify servers against it.
    grpc_tls_cert_file: str = ""
    grpc_tls_key_file: str = ""
    grpc_tls_ca_file: str = ""
    # Signed checkpoints (docs/architecture.md §2a): the Ed25519 private key (base64 of 32 bytes,
    # or PEM). A project role whose environment has it runs the checkpoint writer (one leader
    # across its replicas); the deploy files give it to contacts-project only. Unset: none.
    checkpoint_signing_key: str | None = None
    checkpoint_interval_seconds: float = 600.0  # a checkpoint this often, when the log moved
