"""The gRPC baseline: RegisterContact and PlaceOrder answering an empty response, no database,
no interceptors.

python -m bench.trivial_server PORT
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc


class Trivial(pb_grpc.ContactsServiceServicer):
    async def RegisterContact(
        self, request: pb.RegisterContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterContactResponse:
        return pb.RegisterContactResponse()


class TrivialOrders(opb_grpc.OrdersServiceServicer):
    async def PlaceOrder(
        self, request: opb.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> opb.PlaceOrderResponse:
        return opb.PlaceOrderResponse()


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ContactsServiceServicer_to_server(Trivial(), server)  # type: ignore[abstract]
    opb_grpc.add_OrdersServiceServicer_to_server(TrivialOrders(), server)  # type: ignore[abstract]
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(serve(int(sys.argv[1])))
