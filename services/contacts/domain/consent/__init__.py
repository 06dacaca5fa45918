"""The consent ledger of one contact: consent per channel, double opt-in, suppression.

Pure: commands are validated here, ``evolve`` folds one event, ``decide_*`` turns a command
into events. Events are dicts shaped as the JSON of the consent messages of events.proto, except
that the evidence travels as an "evidence" field, which the application seals (into "personal")
before appending.

Consent (the state a contact stated) and suppression (the channel must not be used: bounces,
complaints) are kept apart: neither changes the other.

This package is used as one module (``from services.contacts.domain import consent``); its
parts are:

- ``events``: event types and the values their fields take;
- ``ledger``: the ledger's state per channel, and its fold (``evolve``, ``fold``);
- ``statements``: recording consent and confirming a double opt-in (``tokens``: their format);
- ``suppression``: suppressing a channel and lifting it;
- ``contact_stream``: what the contact's own stream says (may it be written, what was merged);
- ``merges``: a survivor's consent combined with the ledgers merged into it;
- ``validation``: the checks the commands share.
"""

from services.contacts.domain.consent.contact_stream import absorbed, check_writable
from services.contacts.domain.consent.events import (
    CHANNELS,
    CONFIRMED,
    CONTACT_ABSORBED,
    CONTACT_ABSORPTION_REVERTED,
    CONTACT_ERASED,
    CONTACT_MERGED,
    CONTACT_REGISTERED,
    CONTACT_UNMERGED,
    GRANTED,
    LEGAL_BASES,
    NEVER,
    PENDING,
    PREFIX,
    REASONS,
    REQUESTED,
    SUBSCRIBED,
    SUPPRESSED,
    TYPES,
    UNSUBSCRIBED,
    UNSUPPRESSED,
    WITHDRAWN,
    Event,
    stream_of,
    ts,
)
from services.contacts.domain.consent.ledger import (
    ChannelConsent,
    Ledger,
    Pending,
    Suppression,
    Terms,
    Token,
    evolve,
    evolve_channel,
    fold,
)
from services.contacts.domain.consent.merges import with_merged
from services.contacts.domain.consent.statements import (
    DEFAULT_TTL,
    FUTURE_SKEW,
    MAX_POLICY_VERSION,
    MAX_SOURCE,
    MAX_USER_AGENT,
    Evidence,
    RecordConsent,
    decide_confirm,
    decide_record,
    validate_evidence,
    validate_record,
)
from services.contacts.domain.consent.suppression import (
    MAX_NOTE,
    Suppress,
    Unsuppress,
    decide_suppress,
    decide_unsuppress,
    validate_suppress,
    validate_unsuppress,
)
from services.contacts.domain.consent.tokens import (
    TOKEN_SECRET_BYTES,
    make_token,
    token_contact,
    token_sha256,
)
from services.contacts.domain.consent.validation import Problems, check_channel

__all__ = [
    "CHANNELS",
    "CONFIRMED",
    "CONTACT_ABSORBED",
    "CONTACT_ABSORPTION_REVERTED",
    "CONTACT_ERASED",
    "CONTACT_MERGED",
    "CONTACT_REGISTERED",
    "CONTACT_UNMERGED",
    "DEFAULT_TTL",
    "FUTURE_SKEW",
    "GRANTED",
    "LEGAL_BASES",
    "MAX_NOTE",
    "MAX_POLICY_VERSION",
    "MAX_SOURCE",
    "MAX_USER_AGENT",
    "NEVER",
    "PENDING",
    "PREFIX",
    "REASONS",
    "REQUESTED",
    "SUBSCRIBED",
    "SUPPRESSED",
    "TOKEN_SECRET_BYTES",
    "TYPES",
    "UNSUBSCRIBED",
    "UNSUPPRESSED",
    "WITHDRAWN",
    "ChannelConsent",
    "Event",
    "Evidence",
    "Ledger",
    "Pending",
    "Problems",
    "RecordConsent",
    "Suppress",
    "Suppression",
    "Terms",
    "Token",
    "Unsuppress",
    "absorbed",
    "check_channel",
    "check_writable",
    "decide_confirm",
    "decide_record",
    "decide_suppress",
    "decide_unsuppress",
    "evolve",
    "evolve_channel",
    "fold",
    "make_token",
    "stream_of",
    "token_contact",
    "token_sha256",
    "ts",
    "validate_evidence",
    "validate_record",
    "validate_suppress",
    "validate_unsuppress",
    "with_merged",
]
