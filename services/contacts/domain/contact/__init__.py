"""The contact aggregate: state, evolve (fold one event) and decide (command -> events).

Events are dicts shaped as the JSON of the messages in protos/crm/contacts/v1/events.proto.

This package is used as one module (``from services.contacts.domain import contact``); its
parts are:

- ``state``: the contact's events, its state and their fold (``evolve``, ``fold``);
- ``profile``: the profile fields a command gives, and their validation;
- ``decisions``: register, update, archive, restore, erase;
- ``merges``: merging one contact into another, and undoing it.
"""

from services.contacts.domain.contact.decisions import (
    MAX_REASON,
    decide_archive,
    decide_erase,
    decide_register,
    decide_restore,
    decide_update,
)
from services.contacts.domain.contact.merges import decide_merge, decide_unmerge
from services.contacts.domain.contact.profile import (
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTES,
    MAX_NAME,
    MAX_TAG,
    MAX_TAGS,
    UPDATABLE,
    ProfileInput,
)
from services.contacts.domain.contact.state import (
    ABSORBED,
    ABSORPTION_REVERTED,
    ARCHIVED,
    ERASED,
    IDENTITY_CLAIMED,
    IDENTITY_RELEASED,
    MERGED,
    PERSONAL_FIELDS,
    PREFIX,
    REGISTERED,
    RESTORED,
    UNMERGED,
    UPDATED,
    Contact,
    Event,
    evolve,
    fold,
    identity_changes,
    stream_of,
)

__all__ = [
    "ABSORBED",
    "ABSORPTION_REVERTED",
    "ARCHIVED",
    "ERASED",
    "IDENTITY_CLAIMED",
    "IDENTITY_RELEASED",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_TEXT",
    "MAX_NAME",
    "MAX_REASON",
    "MAX_TAG",
    "MAX_TAGS",
    "MERGED",
    "PERSONAL_FIELDS",
    "PREFIX",
    "REGISTERED",
    "RESTORED",
    "UNMERGED",
    "UPDATABLE",
    "UPDATED",
    "Contact",
    "Event",
    "ProfileInput",
    "decide_archive",
    "decide_erase",
    "decide_merge",
    "decide_register",
    "decide_restore",
    "decide_unmerge",
    "decide_update",
    "evolve",
    "fold",
    "identity_changes",
    "stream_of",
]
