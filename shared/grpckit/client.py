"""Calling a suite API: the channel (plaintext, or TLS/mTLS from the settings) and the bearer
token every call carries (auth.py).

Services calling another service pass ``bearer(token)`` as each call's metadata (cheapest on
hot paths); tools and tests use ``channel(target, token)``, whose calls all carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from shared.grpckit.auth import REASON_HEADER

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str, *, reason: str = "") -> Metadata:
    """The metadata of a call made with ``token`` (and, for an operator reading personal data,
    why)."""
    md: list[tuple[str, str]] = [("authorization", f"Bearer {token}")] if token else []
    if reason:
        md.append((REASON_HEADER, reason))
    return tuple(md)


def service_token(settings: Any, calls: str) -> str:
    """``CRM_SERVICE_TOKEN``, which a process needs to call ``calls``; exits when it is unset
    (every call would be refused: better said at start than as lag or failed orders)."""
    token = str(settings.crm_service_token)
    if not token:
        raise SystemExit(f"CRM_SERVICE_TOKEN is required: this role calls {calls}")
    return token


@dataclass(frozen=True)
class ClientTls:
    """TLS towards the suite's servers: their CA, and this process's certificate for mTLS."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None

    @classmethod
    def of(cls, settings: Any) -> ClientTls | None:
        """From GRPC_TLS_CA_FILE (and GRPC_TLS_CERT_FILE/GRPC_TLS_KEY_FILE); None without a CA:
        plaintext."""
        if not settings.grpc_tls_ca_file:
            return None
        cert = key = None
        if settings.grpc_tls_cert_file and settings.grpc_tls_key_file:
            cert = Path(settings.grpc_tls_cert_file).read_bytes()
            key = Path(settings.grpc_tls_key_file).read_bytes()
        return cls(Path(settings.grpc_tls_ca_file).read_bytes(), cert, key)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)


def open_channel(
    target: str,
    tls: ClientTls | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(
            target, options=options or None, interceptors=interceptors or None
        )
    return grpc.aio.secure_channel(
        target, tls.credentials(), options=options or None, interceptors=interceptors or None
    )


def channel(
    target: str, token: str, *, reason: str = "", tls: ClientTls | None = None
) -> grpc.aio.Channel:
    """A channel whose every call carries ``bearer(token, reason=reason)`` (unless the call
    sets its own authorization)."""
    md = bearer(token, reason=reason)
    return open_channel(target, tls, [kind(md) for kind in _KINDS])


def _with(md: Metadata, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    own = grpc.aio.Metadata(*tuple(details.metadata or ()))
    for key, value in md:
        if key not in own:
            own.add(key, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, own, details.credentials, details.wait_for_ready
    )


class _Bearer:
    def __init__(self, md: Metadata) -> None:
        self.md = md

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_with(self.md, details), request)


class _UnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request)


class _UnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request)


class _StreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._call(continuation, details, requests)


class _StreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._call(continuation, details, requests)


_KINDS = (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
