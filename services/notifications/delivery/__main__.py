"""python -m services.notifications.delivery — eventlet's monkey patching comes first, before
any module that opens sockets or threads is imported; then grpcio is kept out (grpc_shim.py)."""

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402

from services.notifications.delivery import grpc_shim  # noqa: E402

grpc_shim.install()

from services.notifications.delivery.main import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run())
