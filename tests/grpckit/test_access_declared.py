"""Every RPC of every registered service declares who may call it (crm.options.v1.access), so a
new RPC cannot forget; and the declarations keep the suite's rules: auditors only read, and a
read an auditor may make that answers with personal data says so (and is then redacted for
auditors and recorded for the others)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from crm.options.v1 import options_pb2
from services.registry import SERVICES
from shared.admin.servicer import SERVICE as ADMIN
from shared.grpckit.auth import AUDITOR, ROLE_NAMES, declared_rule

# Answers holding these messages hold decrypted personal data.
PERSONAL = {
    "crm.contacts.v1.Contact",
    "crm.contacts.v1.ContactEvent",
    "crm.contacts.v1.ConsentEvidence",
    "crm.segmentation.v1.ExplainedFact",  # a rule's facts: attributes, the email's domain
    "crm.notifications.v1.Message",  # the address it went to
}
READS = (
    "Get",
    "List",
    "Find",
    "Is",
    "Explain",
    "Preview",
    "Export",
    "BatchGet",
    "Read",
    "Tail",
    "DryRun",  # replays the log in memory: writes nothing
    "Evaluate",  # a rule evaluated for one contact: writes nothing (but the read record)
)


def methods() -> Iterator[MethodDescriptor]:
    for spec in SERVICES:
        if spec.api is None:
            continue
        for name, _ in spec.api().services:
            yield from descriptor_pool.Default().FindServiceByName(name).methods
    # Every project role serves the Admin API (runtime.project).
    yield from descriptor_pool.Default().FindServiceByName(ADMIN).methods


METHODS = list(methods())


def holds(message: Descriptor, names: set[str], seen: set[str] | None = None) -> bool:
    seen = seen if seen is not None else set()
    if message.full_name in names:
        return True
    seen.add(message.full_name)
    return any(
        f.message_type is not None
        and f.message_type.full_name not in seen
        and holds(f.message_type, names, seen)
        for f in message.fields
    )


def test_the_registry_serves_rpcs() -> None:
    assert len(METHODS) > 40


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_declares_its_roles(method: MethodDescriptor) -> None:
    assert method.GetOptions().HasExtension(options_pb2.access), (
        f"{method.full_name}: add option (crm.options.v1.access) = {{roles: [...]}}"
    )
    rule = declared_rule(method.containing_service.full_name, method.name)
    assert rule is not None and rule.roles, f"{method.full_name} allows no role"
    assert rule.roles <= set(ROLE_NAMES), f"{method.full_name}: ROLE_UNSPECIFIED is no role"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_auditors_only_read(method: MethodDescriptor) -> None:
    rule = declared_rule(method.containing_service.full_name, method.name)
    assert rule is not None
    if AUDITOR in rule.roles:
        assert method.name.startswith(READS), f"{method.full_name} lets auditors write"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_a_read_with_personal_data_says_so(method: MethodDescriptor) -> None:
    rule = declared_rule(method.containing_service.full_name, method.name)
    assert rule is not None
    if method.name.startswith(READS) and holds(method.output_type, PERSONAL):
        assert rule.personal_data, f"{method.full_name} answers with personal data"
    if rule.personal_data:
        assert holds(method.output_type, PERSONAL), f"{method.full_name}: personal_data?"
