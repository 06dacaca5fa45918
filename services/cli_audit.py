"""`crm audit …`: signed checkpoints (through the Admin API, or a database given with
--database-url), inclusion proofs (the database), keys."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import grpc
import orjson
import typer

from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_admin import Admin, Service, admin_targets
from services.cli_audit_calls import api_failed, create_checkpoint, list_checkpoints
from services.cli_calls import Token, dial, failure, metadata
from services.cli_events import DatabaseUrl, ExplicitDatabaseUrl, Json, PublicKeys
from services.cli_support import (
    OK,
    TAMPER,
    USAGE,
    connect,
    emit,
    err,
    exit_with,
    fail,
    pinned_keys,
    report,
    run,
    signing_key,
)
from shared.eventstore.audit.checkpoints import Checkpoint, SigningKey
from shared.eventstore.audit.port import LogBehindCheckpoint
from shared.eventstore.audit.proof import ProofError, check_proof, make_proof

app = typer.Typer(help="Signed checkpoints and inclusion proofs.", no_args_is_help=True)

SigningKeyOption = Annotated[
    str,
    typer.Option(
        "--signing-key",
        envvar="CHECKPOINT_SIGNING_KEY",
        show_default=False,
        help="the Ed25519 private key (base64 or PEM, or a file holding it); checkpoint --create"
        " uses it with --database-url only",
    ),
]


@app.command("checkpoint")
def checkpoint(
    create: Annotated[bool, typer.Option("--create", help="sign a checkpoint now")] = False,
    after: Annotated[
        int, typer.Option(min=0, help="export only checkpoints numbered above this")
    ] = 0,
    as_json: Json = False,
    service: Service = None,
    admin: Admin = None,
    token: Token = "",
    database_url: ExplicitDatabaseUrl = "",
    key: SigningKeyOption = "",
) -> None:
    """Export the signed checkpoints as JSON lines (`> checkpoints.jsonl`), or with --create
    sign one as of the end of the log now (when it moved since the last one) and print it.
    Through the Admin API with your token (exporting: an auditor's will do; --create: an
    operator's, answered by the project role that holds the signing key, the first of them
    unless --service); with --database-url, that database (and --create signs with
    --signing-key). Exit 1 when the log ends before the last checkpoint's position (its tail
    was removed)."""
    if database_url:
        exit_with(run(_checkpoint_database(database_url, create, after, key, as_json)))
    if create:
        targets = admin_targets(admin, service)
        exit_with(asyncio.run(_create_through_api(targets, token, as_json)))
    where, target = next(iter(admin_targets(admin, service).items()))

    async def listed() -> list[Checkpoint]:
        async with dial(target) as channel:
            try:
                return await list_checkpoints(
                    pb_grpc.AdminServiceStub(channel), after, metadata(token)
                )
            except grpc.aio.AioRpcError as exc:
                api_failed(exc, f"{where} at {target}", as_json)

    exit_with(_listed(asyncio.run(listed()), as_json))


def _listed(found: list[Checkpoint], as_json: bool) -> int:
    for cp in found:
        emit(cp.to_json())
    if not as_json:
        err.print(f"{len(found)} checkpoint(s)")
    return OK


def _created(made: Checkpoint | None, created: bool, as_json: bool) -> int:
    if not created:
        err.print(
            "nothing to sign: the log is empty"
            if made is None
            else f"the log has not moved since checkpoint {made.number}"
        )
        return OK
    assert made is not None
    emit(made.to_json())
    if not as_json:
        err.print(
            f"checkpoint {made.number}: position {made.position}, {made.streams} "
            f"streams, root {made.root.hex()}, key {made.key_id}"
        )
    return OK


async def _create_through_api(targets: dict[str, str], token: str, as_json: bool) -> int:
    """CreateCheckpoint on the first of ``targets`` whose role holds the signing key."""
    for where, target in targets.items():
        async with dial(target) as channel:
            try:
                made, created = await create_checkpoint(
                    pb_grpc.AdminServiceStub(channel), metadata(token)
                )
            except grpc.aio.AioRpcError as exc:
                if failure(exc, where)["reason"] == "SIGNING_KEY_MISSING":
                    continue
                api_failed(exc, f"{where} at {target}", as_json)
        return _created(made, created, as_json)
    fail(
        f"no project role signs checkpoints ({', '.join(targets)} asked): none has "
        "CHECKPOINT_SIGNING_KEY"
    )


async def _checkpoint_database(url: str, create: bool, after: int, key: str, as_json: bool) -> int:
    signer = signing_key(key) if create else None
    audit = await connect(url)
    try:
        if signer is None:
            return _listed(await audit.checkpoints(after), as_json)
        try:
            made = await audit.create_checkpoint(signer)
        except LogBehindCheckpoint as exc:
            err.print(f"[red]truncated[/red]: {exc}")
            return TAMPER
        if made is not None:
            return _created(made, True, as_json)
        return _created(await audit.latest_checkpoint(), False, as_json)
    finally:
        await audit.close()


@app.command("prove")
def prove(
    event_id: Annotated[str, typer.Argument(help="the event's id")],
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="its number; default: the latest")
    ] = None,
    as_json: Json = False,
    database_url: DatabaseUrl = "",
) -> None:
    """Print a proof (JSON) that the event is in the log the checkpoint committed to: its chain
    link to its stream's head and the Merkle audit path. Exit 1 when the log no longer matches
    the checkpoint, 2 when the event or checkpoint is unknown."""
    try:
        wanted = uuid.UUID(event_id)
    except ValueError:
        fail(f"{event_id!r} is not an event id")

    async def work() -> int:
        audit = await connect(database_url)
        try:
            chosen = await audit.checkpoints(checkpoint - 1) if checkpoint else []
            if checkpoint is None:
                latest = await audit.latest_checkpoint()
                chosen = [latest] if latest is not None else []
            if not chosen or (checkpoint is not None and chosen[0].number != checkpoint):
                fail(f"no checkpoint {checkpoint or ''}".strip())
            try:
                proof = await make_proof(audit, chosen[0], wanted)
            except ProofError as exc:
                fail(str(exc), TAMPER if exc.tamper else USAGE)
        finally:
            await audit.close()
        emit(proof)
        if not as_json:
            err.print(
                f"event {wanted} is in checkpoint {chosen[0].number}: "
                f"{len(proof['chain'])} event(s) to its stream's head, "
                f"{len(proof['audit_path'])} hashes to the root"
            )
        return OK

    exit_with(run(work()))


@app.command("check-proof")
def check_proof_command(
    proof_file: Annotated[Path, typer.Argument(help="a proof from crm audit prove")],
    public_key: PublicKeys = None,
    as_json: Json = False,
) -> None:
    """Verify an inclusion proof offline: the checkpoint's signature (with the key you pin),
    the chain from the event to its stream's head, the audit path to the signed root."""
    pinned = pinned_keys(public_key)
    try:
        body = orjson.loads(proof_file.read_bytes())
    except OSError as exc:
        fail(f"{proof_file}: {exc.strerror or exc}")
    except orjson.JSONDecodeError as exc:
        fail(f"{proof_file}: not JSON ({exc})")
    result = check_proof(body, pinned=pinned)
    exit_with(report(result, as_json, f"proof {proof_file}"))


@app.command("keygen")
def keygen(as_json: Json = False) -> None:
    """A new signing key: the private key (for the crm-checkpoint-key Secret) on stdout, its
    public key and id (for the auditors) on stderr, or everything as JSON with --json."""
    key = SigningKey.generate()
    public = {"public_key": _b64(key.public_key), "key_id": key.key_id}
    if as_json:
        emit({"private_key": key.private_text(), **public})
    else:
        typer.echo(key.private_text())
        err.print(f"public key {public['public_key']} (key id {key.key_id})")
    exit_with(OK)


@app.command("public-key")
def public_key_command(
    key: SigningKeyOption = "",
    as_json: Json = False,
) -> None:
    """The public key (base64) and key id of the signing key, to hand to auditors."""
    signer = signing_key(key)
    if as_json:
        emit({"public_key": _b64(signer.public_key), "key_id": signer.key_id})
    else:
        typer.echo(_b64(signer.public_key))
        err.print(f"key id {signer.key_id}")
    exit_with(OK)


def _b64(raw: bytes) -> str:
    from shared.eventstore.audit.checkpoints import b64

    return b64(raw)
