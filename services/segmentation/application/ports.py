"""What segmentation needs from outside, as protocols (the adapters implement them; the
application tests use fakes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.segmentation.domain.facts import AttributeValue


@dataclass(frozen=True, slots=True)
class PersonalFacts:
    """The personal facts rules read: kept only while the contact is not erased."""

    email_domain: str = ""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


class ContactVersions(Protocol):
    async def personal(
        self, refs: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], PersonalFacts]:
        """Each (contact id, stream version)'s personal facts as that version left them;
        absent when the contact has no such version."""
        ...
