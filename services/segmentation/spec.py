"""The segmentation service, declared once (shared/service.py)."""

from __future__ import annotations

from services.segmentation import app
from services.segmentation.cli import GRPC_PORT
from services.segmentation.cli import app as cli
from shared.service import DevRole, ServiceSpec

CONTACTS_TARGET = "127.0.0.1:50051"  # the contacts serve role under make run

SPEC = ServiceSpec(
    name="segmentation",
    settings=app.SegmentationSettings,
    roles={"serve": app.serve, "project": app.project},
    projections=lambda: app.PROJECTIONS,
    dev={
        "serve": DevRole(GRPC_PORT, 9468, env={"CONTACTS_TARGET": CONTACTS_TARGET}),
        "project": DevRole(50153, 9469, env={"CONTACTS_TARGET": CONTACTS_TARGET}),
    },
    api=app.SegmentationApi,
    cli=cli,
    cli_name="segments",
)
