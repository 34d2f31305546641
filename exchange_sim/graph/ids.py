"""Graph ids over the store's EWS ids.

* REST ids are the EWS ids in URL-safe base64 (``+/`` -> ``-_``), as Graph's are; they change when an
  item moves (Exchange gives a moved item a new id).
* Immutable ids (``Prefer: IdType="ImmutableId"``) are assigned when an item is created and survive moves
  (including a delete to Deleted Items); a copy gets a new one. They live in the hidden item property
  ``_ImmutableId``, so a ``--state`` snapshot keeps them.
* Occurrence ids encode the series master's Graph id and the occurrence's original start.
* Users have a GUID (derived from the address, stable across runs) and are also reached by address.

Either id type is accepted in URLs; the ``Prefer`` header only decides what the answers carry.
"""

from __future__ import annotations

import base64
import binascii
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from exchange_sim.calendar import iso_key, occurrence_id, split_occurrence_id
from exchange_sim.graph.errors import GraphError

if TYPE_CHECKING:
    from exchange_sim.store import Change, Item, Store

IMMUTABLE_PROP = "_ImmutableId"
USER_NAMESPACE = uuid.UUID("0d5f8a44-61a3-4a43-9f49-4f4b3c7b1e20")
OCCURRENCE_MARK = b"OC\x00"


def rest_id(store_id: str) -> str:
    return store_id.replace("+", "-").replace("/", "_")


def store_id_from_rest(graph_id: str) -> str:
    return graph_id.replace("-", "+").replace("_", "/")


def user_id(address: str) -> str:
    return str(uuid.uuid5(USER_NAMESPACE, address.lower()))


def _b64url_decode(value: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def malformed() -> GraphError:
    return GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


class IdMap:
    """Immutable ids <-> the store's current ids; one per store (``store.extensions["graph_ids"]``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._to_immutable: dict[str, str] = {}  # every store id ever seen -> immutable id
        self._to_store: dict[str, str] = {}  # immutable id -> current store id
        self._indexed_loads = -1  # store.loads when the store was last read whole
        store.add_hook("complete_defaults", self._assign)
        store.add_listener(self._on_change)

    @classmethod
    def for_store(cls, store: Store) -> IdMap:
        found = store.extensions.get("graph_ids")
        if found is None:
            found = cls(store)
            store.extensions["graph_ids"] = found
        return found

    # ---- store hooks (called under the store lock) ------------------------------------------------
    def _assign(self, item: Item) -> None:
        with self._lock:
            immutable = item.props.get(IMMUTABLE_PROP)
            current = self._to_store.get(immutable) if immutable else None
            if immutable is None or (current is not None and current != item.id):  # new, or a copy
                immutable = base64.urlsafe_b64encode(b"IM" + uuid.uuid4().bytes).decode()
                item.props[IMMUTABLE_PROP] = immutable
            self._to_immutable[item.id] = immutable
            self._to_store[immutable] = item.id

    def _on_change(self, change: Change) -> None:
        if change.is_folder or change.op != "created" or not change.moved_from:
            return
        with self._lock:
            immutable = self._to_immutable.get(change.moved_from)
            if immutable is not None:
                self._to_immutable[change.id] = immutable
                self._to_store[immutable] = change.id

    def _rebuild(self) -> None:
        """After a state file was loaded behind our back: index what the store holds. Once per
        load: an id that is not ours must not cost a copy of the whole store each time."""
        loads = self.store.loads
        if self._indexed_loads == loads:
            return
        for item in self.store.iter_items():
            immutable = item.props.get(IMMUTABLE_PROP)
            if immutable:
                with self._lock:
                    self._to_immutable[item.id] = immutable
                    self._to_store[immutable] = item.id
        self._indexed_loads = loads

    # ---- lookups ---------------------------------------------------------------------------------
    def immutable_for(self, store_id: str, item: Item | None = None) -> str:
        if item is not None and item.props.get(IMMUTABLE_PROP):
            return item.props[IMMUTABLE_PROP]
        with self._lock:
            found = self._to_immutable.get(store_id)
        if found is None:
            self._rebuild()
            with self._lock:
                found = self._to_immutable.get(store_id)
        return found or rest_id(store_id)

    def store_for_immutable(self, immutable: str) -> str | None:
        with self._lock:
            found = self._to_store.get(immutable)
        if found is None:
            self._rebuild()
            with self._lock:
                found = self._to_store.get(immutable)
        return found

    # ---- Graph ids -------------------------------------------------------------------------------
    def graph_id(self, store_id: str, immutable: bool, item: Item | None = None) -> str:
        """The Graph id of an item (occurrence ids included) in the requested id type."""
        split = split_occurrence_id(store_id)
        if split is not None:
            master = self.graph_id(split[0], immutable)
            raw = OCCURRENCE_MARK + master.encode() + b"\x00" + iso_key(split[1]).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return self.immutable_for(store_id, item) if immutable else rest_id(store_id)

    def resolve(self, graph_id: str) -> str:
        """The store id (occurrence ids included) behind a Graph id of either type."""
        raw = _b64url_decode(graph_id)
        if raw is None or len(raw) < 8:
            raise malformed()
        if raw.startswith(OCCURRENCE_MARK):
            try:
                master, stamp = raw[len(OCCURRENCE_MARK) :].decode().split("\x00")
                when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            except ValueError:
                raise malformed() from None
            return occurrence_id(self.resolve(master), when)
        if raw.startswith(b"IM"):
            found = self.store_for_immutable(graph_id)
            if found is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            return found
        return store_id_from_rest(graph_id)


def folder_graph_id(store_id: str) -> str:
    return rest_id(store_id)
