"""Meeting behaviour: invitations, updates, cancellations and responses between simulator mailboxes."""

from __future__ import annotations

from typing import Any


def respond(store: Any, item_id: str, response: str, send: bool = True) -> Any:
    return store.update_item(item_id, set_props={"MyResponseType": response})


def install(simulator: Any) -> None:
    return None
