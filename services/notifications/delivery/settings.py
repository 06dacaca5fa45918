"""The delivery workers' settings, from the environment only (README, "Delivery role")."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeliverySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # DeliveryService over nameko-grpc, and the HTTP port of /metrics and /healthz.
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # TLS on the gRPC port (PEM files), as the suite's other servers: with both, callers must
    # use TLS (GRPC_TLS_CA_FILE on their side). Client certificates are not checked here
    # (nameko-grpc's server does not ask for them): callers are admitted by their token.
    grpc_tls_cert_file: str = ""
    grpc_tls_key_file: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # Who may call (shared/tokens.py): only tokens of the role `service`.
    crm_tokens: str = ""
    crm_tokens_file: str = ""
    # Messages of one batch sent at once (green threads); one batch is at most 500.
    delivery_concurrency: int = Field(default=50, ge=1, le=500)
    # Email: one SMTP server (the relay), a pool of reused connections to it.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    # The CA bundle (PEM file) the relay's certificate is checked against after STARTTLS; unset:
    # the system's CAs. The relay's name (SMTP_HOST) must match its certificate either way.
    smtp_tls_ca_file: str = ""
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_pool_size: int = Field(default=4, ge=1, le=100)
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # Message-ID: <message_id@MESSAGE_ID_DOMAIN>; the sending domain in production.
    message_id_domain: str = "crm.localhost"
    # SMS: a Twilio-style gateway, POST {SMS_BASE_URL}/Messages.json with basic auth.
    sms_base_url: str = ""
    sms_account_sid: str = ""
    sms_auth_token: str = ""
    # Webhooks: signed as Standard Webhooks with this secret ("whsec_" + base64).
    webhook_secret: str = ""
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    log_level: str = "INFO"
    log_format: str = "json"  # json | console
