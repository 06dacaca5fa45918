"""Optional mutual TLS on a real socket, with a CA made here: the server and the suite's clients
take their certificates from the GRPC_TLS_* settings; a client with a certificate the CA signed
is served (still needing its bearer token), one without a certificate, with one another CA
signed, or speaking plaintext is not."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.grpckit.client import ClientTls, channel
from shared.grpckit.server import GrpcServer, ServerTls
from shared.settings import Settings
from tests.grpckit.probe import SERVICE, TOKEN, Probe, access, call

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return Pem(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _builder(
    subject: str, issuer: str, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
    )


@dataclass(frozen=True)
class Ca:
    name: str
    key: ec.EllipticCurvePrivateKey
    pem: Pem

    @classmethod
    def make(cls, name: str) -> Ca:
        key = _key()
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, _pem(cert, key))

    def issue(self, name: str, server: bool) -> Pem:
        key = _key()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = _builder(name, self.name, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _pem(builder.sign(self.key, hashes.SHA256()), key)


def files(tmp: Path, name: str, pem: Pem) -> tuple[str, str]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert.write_bytes(pem.cert)
    key.write_bytes(pem.key)
    return str(cert), str(key)


@dataclass
class Env:
    target: str
    ca: Ca
    tmp: Path

    def settings(self, name: str, pem: Pem | None) -> Settings:
        """A client's settings: the suite's CA, and its own certificate if it has one."""
        ca_file = self.tmp / "ca.crt"
        ca_file.write_bytes(self.ca.pem.cert)
        cert, key = files(self.tmp, name, pem) if pem else ("", "")
        return Settings(
            grpc_tls_ca_file=str(ca_file), grpc_tls_cert_file=cert, grpc_tls_key_file=key
        )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    ca = Ca.make("crm-suite test CA")
    cert, key = files(tmp_path, "server", ca.issue("contacts", server=True))
    ca_file = tmp_path / "clients-ca.crt"
    ca_file.write_bytes(ca.pem.cert)
    settings = Settings(
        grpc_tls_cert_file=cert, grpc_tls_key_file=key, grpc_tls_ca_file=str(ca_file)
    )
    tls = ServerTls.of(settings)
    assert tls is not None and tls.client_ca == ca.pem.cert
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[(SERVICE, Probe().register)],
        access=access(),
        tls=tls,
    )
    await server.start()
    await server.ready()
    yield Env(f"127.0.0.1:{server.port}", ca, tmp_path)
    await server.stop()


async def ok(target: str, tls: ClientTls | None, token: str = TOKEN) -> bytes:
    async with channel(target, token, tls=tls) as ch:
        return bytes(await call(ch, "Ok")(b"", timeout=5))


async def test_a_client_the_ca_signed_is_served(env: Env) -> None:
    tls = ClientTls.of(env.settings("orders", env.ca.issue("orders", server=False)))
    assert tls is not None and tls.cert is not None
    assert await ok(env.target, tls) == b"ok"
    with pytest.raises(grpc.aio.AioRpcError) as info:  # TLS is no substitute for a token
        await ok(env.target, tls, token="")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_client_without_a_certificate_the_ca_signed_is_not(env: Env) -> None:
    other = Ca.make("someone else's CA")
    for name, pem in [("anonymous", None), ("intruder", other.issue("intruder", server=False))]:
        tls = ClientTls.of(env.settings(name, pem))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ok(env.target, tls)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, name
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ok(env.target, None)  # plaintext
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_without_tls_settings_everything_is_plaintext() -> None:
    assert ServerTls.of(Settings()) is None and ClientTls.of(Settings()) is None
    with pytest.raises(SystemExit, match="go together"):
        ServerTls.of(Settings(grpc_tls_cert_file="/x.crt"))
