"""Flows end to end through real processes (issue 12): the welcome series saved through
FlowsService; a contact registered and subscribing to email through contacts; the flow engine
on notifications' project role starts the run from contacts' published ConsentGranted, and the
welcome email, decided by the same policy as any other message, reaches a real SMTP server,
its decision naming the flow, its version, the step and the run; the flow's report (the
project role's reports read model, ReportsService on the serve role) counts it for its step."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import json_format

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import flow_definition_pb2 as fpb
from crm.notifications.v1 import flows_pb2 as fl
from crm.notifications.v1 import flows_pb2_grpc as fl_grpc
from crm.notifications.v1 import reports_pb2 as rpb
from crm.notifications.v1 import reports_pb2_grpc as rpb_grpc
from crm.orders.v1 import events_pb2 as oepb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from services.notifications.domain.decision import DECIDED
from services.notifications.tests.test_flow_definitions import EXAMPLES, json_form
from tests.e2e.notifications_env import Ledger, Suite, eventually
from tests.e2e.processes import Proc

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


async def test_welcome_series_sends_the_welcome_through_real_processes(
    dsn: str, procs: list[Proc], tmp_path: Path
) -> None:
    suite = Suite(dsn, tmp_path, procs)
    try:
        await suite.start()
        await suite.start_project()
        await suite.template(
            "welcome-email",
            epb.CHANNEL_EMAIL,
            subject="Welcome, {{ contact.first_name }}",
            text="Hello {{ contact.first_name }}, glad you are here.",
        )
        definition = json_form((EXAMPLES[0].parent / "welcome-series.yaml").read_text())
        async with suite.serve.channel() as ch:
            made = await fl_grpc.FlowsServiceStub(ch).CreateFlow(
                fl.CreateFlowRequest(
                    definition=json_format.ParseDict(definition, fpb.FlowDefinition()),
                    request_id="e2e-welcome-series",
                )
            )
        flow_id = made.flow.flow_id
        ada = await suite.register(
            "ada@example.com", "+33612345678", "Europe/Paris", first_name="Ada"
        )

        async def welcomed() -> bool:
            return len(suite.smtp.messages()) >= 1

        await eventually(welcomed, "the welcome email at the SMTP server")
        [email] = suite.smtp.messages()
        assert str(email["Subject"]) == "Welcome, Ada"
        assert str(email["To"]) == "ada@example.com"
        [message_id] = (await suite.listed({ada})).keys()
        [decided] = (await Ledger.read(dsn)).of(message_id, DECIDED)
        trigger = decided["trigger"]
        assert (trigger["source"], trigger["flow_id"]) == ("flow", flow_id)
        assert (trigger["step_id"], trigger["flow_version"]) == ("welcome", 1)
        assert decided["outcome"] == "OUTCOME_SEND" and decided["contact_id"] == ada

        async def report() -> rpb.Report:
            async with suite.serve.channel() as ch:
                got = await rpb_grpc.ReportsServiceStub(ch).GetFlowReport(
                    rpb.GetFlowReportRequest(key="welcome-series")
                )
            return got.report

        async def reported() -> bool:
            return (await report()).total.sent == 1

        await eventually(reported, "the welcome email in the flow's report")
        [row] = (await report()).rows
        assert (row.step_id, row.recipients, row.sent, row.delivered) == ("welcome", 1, 1, 1)
    finally:
        suite.stop_sinks()


FAST_CART_FLOW = {
    "key": "e2e-abandoned-cart",
    "name": "Abandoned cart, in seconds",
    "trigger": {"event": {"event_type": "crm.orders.v1.CartAbandoned"}},
    "exit_events": ["crm.orders.v1.CartRecovered", "crm.orders.v1.OrderPlaced"],
    "steps": [
        {"id": "wait", "delay": {"duration": "1s"}, "next": "reminder"},
        # transactional: no smart sending, so only the run's end keeps the second one away
        {
            "id": "reminder",
            "send": {"template_key": "cart-reminder", "transactional": True},
            "next": "wait-more",
        },
        {"id": "wait-more", "delay": {"duration": "6s"}, "next": "incentive"},
        {"id": "incentive", "send": {"template_key": "cart-incentive", "transactional": True}},
    ],
    "re_entry": {"policy": "RE_ENTRY_POLICY_AFTER_EXIT"},
}


async def test_an_abandoned_cart_reminder_lists_its_items_and_an_order_ends_the_run(
    dsn: str, procs: list[Proc], tmp_path: Path
) -> None:
    suite = Suite(dsn, tmp_path, procs, with_orders=True)
    try:
        await suite.start()
        await suite.start_project()
        lines = "{% for i in cart.items %}{{ i.quantity }} x {{ i.name }}\n{% endfor %}"
        await suite.template("cart-reminder", epb.CHANNEL_EMAIL, subject="Your cart", text=lines)
        await suite.template(
            "cart-incentive", epb.CHANNEL_EMAIL, subject="10% off your cart", text=lines
        )
        async with suite.serve.channel() as ch:
            await fl_grpc.FlowsServiceStub(ch).CreateFlow(
                fl.CreateFlowRequest(
                    definition=json_format.ParseDict(FAST_CART_FLOW, fpb.FlowDefinition())
                )
            )
        ada = await suite.register(
            "ada@example.com", "+33612345678", "Europe/Paris", first_name="Ada"
        )
        async with suite.orders.channel() as ch:
            orders = opb_grpc.OrdersServiceStub(ch)
            cart = (
                await orders.CreateCart(
                    opb.CreateCartRequest(customer=opb.CustomerRef(contact_id=ada), currency="EUR")
                )
            ).cart
            for sku, name, n in (("tea-1", "Assam tea", 2), ("cup-1", "Tea cup", 1)):
                item = oepb.LineItem(sku=sku, name=name, quantity=n, unit_price=650)
                await orders.AddCartItem(opb.AddCartItemRequest(cart_id=cart.cart_id, item=item))

            async def reminded() -> bool:
                return len(suite.smtp.messages()) >= 1

            await eventually(reminded, "the cart reminder at the SMTP server")
            [email] = suite.smtp.messages()
            assert str(email["Subject"]) == "Your cart"
            assert email.get_content().splitlines() == ["2 x Assam tea", "1 x Tea cup"]
            await orders.PlaceOrder(opb.PlaceOrderRequest(cart_id=cart.cart_id))

        async def ended() -> bool:
            async with suite.serve.channel() as ch:
                runs = await fl_grpc.FlowsServiceStub(ch).ListFlowRuns(
                    fl.ListFlowRunsRequest(contact_id=ada)
                )
            return [(r.state, r.end_reason) for r in runs.runs] == [
                (fl.FLOW_RUN_STATE_ENDED, "exit_event")
            ]

        await eventually(ended, "the run ended by the order")
        await asyncio.sleep(8)  # past the incentive's time, had the run gone on
        assert len(suite.smtp.messages()) == 1
    finally:
        suite.stop_sinks()


@pytest.mark.timeout(300)  # waits for a wall-clock minute
async def test_a_birthday_email_at_its_local_time_through_real_processes(
    dsn: str, procs: list[Proc], tmp_path: Path
) -> None:
    """A date trigger end to end: the contact's birthday (sealed in contacts' event) is read
    by the project role from contacts as of the registration, and the date timer starts the run
    at the local time: one email, at the SMTP server, decided for the flow's step."""
    suite = Suite(dsn, tmp_path, procs)
    try:
        await suite.start()
        await suite.start_project()
        await suite.template(
            "birthday-email",
            epb.CHANNEL_EMAIL,
            subject="Happy birthday, {{ contact.first_name }}",
            text="Many happy returns ({{ contact.attributes.birthday }}, {{ data.year }}).",
        )
        # the next whole minute but one, in UTC: the contact's birthday is today, at that time
        fire = (datetime.now(UTC) + timedelta(minutes=2)).replace(second=0, microsecond=0)
        definition = json_form((EXAMPLES[0].parent / "birthday.yaml").read_text())
        definition["trigger"]["date"]["local_time"] = fire.strftime("%H:%M")
        async with suite.serve.channel() as ch:
            made = await fl_grpc.FlowsServiceStub(ch).CreateFlow(
                fl.CreateFlowRequest(
                    definition=json_format.ParseDict(definition, fpb.FlowDefinition())
                )
            )
        if (fire.month, fire.day) == (2, 29):
            pytest.skip("today is Feb 29: its anniversary is another day (domain tests)")
        born = fire.date().replace(year=1990)
        ada = await suite.register_with(
            {"birthday": str(born)}, "ada@example.com", "+33612345678", "UTC", first_name="Ada"
        )

        async def greeted() -> bool:
            return len(suite.smtp.messages()) >= 1

        await eventually(greeted, "the birthday email at the SMTP server", timeout=170)
        assert datetime.now(UTC) >= fire
        [email] = suite.smtp.messages()
        assert str(email["Subject"]) == "Happy birthday, Ada"
        assert f"({born.isoformat()}, {fire.year})" in email.get_content()
        [message_id] = (await suite.listed({ada})).keys()
        [decided] = (await Ledger.read(dsn)).of(message_id, DECIDED)
        trigger = decided["trigger"]
        assert (trigger["flow_id"], trigger["step_id"]) == (made.flow.flow_id, "greet")
    finally:
        suite.stop_sinks()
