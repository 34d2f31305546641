"""Contact folders and contacts: ``/users/{id}/contactFolders`` (+ childFolders), contacts in a folder.

The well-known name ``contacts`` stands for the default Contacts folder (``contactFolders/contacts``);
``/users/{id}/contactFolders`` lists the folders below it, ``/users/{id}/contacts`` the contacts in it.
Contacts cannot be moved through v1.0: a client moves one by creating it elsewhere and deleting it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from exchange_sim.graph import extended
from exchange_sim.graph.api import (
    GraphRequest,
    GraphResponse,
    check_if_match,
    collection,
    etag,
    no_content,
    ok,
    route,
)
from exchange_sim.graph.errors import GraphError, bad_request
from exchange_sim.graph.ids import folder_graph_id, store_id_from_rest
from exchange_sim.graph.odata import apply_select, check_select, compile_filter, filter_roots, parse_expand
from exchange_sim.graph.values import parse_datetime, utc_text
from exchange_sim.store import Folder, Item, StoreError, html_to_text

READ = ("Contacts.Read", "Contacts.ReadWrite")
WRITE = ("Contacts.ReadWrite",)
FOLDER_PROPS = {"id", "displayName", "parentFolderId"}


# ---- folders ------------------------------------------------------------------------------------------
def mailbox_folder(request: GraphRequest, ref: str | None, well_known: str, folder_class: str) -> Folder:
    """A folder of the request's mailbox by Graph id or its well-known name (None: that one);
    a folder of another mailbox or another class is not found, as in Graph."""
    assert request.mailbox is not None
    store = request.store
    if ref is None or ref.lower() == well_known:
        return store.distinguished_folder(request.mailbox, well_known)
    try:
        folder = store.folder(store_id_from_rest(ref))
    except StoreError as err:
        if err.code == "ErrorInvalidIdMalformed":
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.") from None
    if folder.mailbox.lower() != request.mailbox.lower() or folder.folder_class != folder_class:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return folder


def resolve_folder(request: GraphRequest, ref: str) -> Folder:
    """A contact folder of the request's mailbox by Graph id or the well-known name ``contacts``."""
    return mailbox_folder(request, ref, "contacts", "IPF.Contact")


def folder_json(folder: Folder) -> dict[str, Any]:
    return {
        "id": folder_graph_id(folder.id),
        "displayName": folder.display_name,
        "parentFolderId": folder_graph_id(folder.parent_id) if folder.parent_id else None,
    }


def _folders(request: GraphRequest, parent: Folder, context: str) -> GraphResponse:
    check_select(request.query.select, FOLDER_PROPS, "contactFolder")
    folders = [folder_json(f) for f in request.store.child_folders(parent.id) if f.folder_class == "IPF.Contact"]
    predicate = compile_filter(request.query.filter)
    if predicate:
        folders = [f for f in folders if predicate(f)]
    return collection(request, [apply_select(f, request.query.select) for f in folders], context, page_size=request.front.page_size)


def _create_folder(request: GraphRequest, parent: Folder) -> GraphResponse:
    data = request.json()
    unknown = set(data) - {"displayName", "parentFolderId", "@odata.type"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "contactFolder")
    name = data.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The displayName of a folder is required.", "ErrorInvalidRequest")
    folder = request.store.create_folder(parent.id, name, "IPF.Contact")
    body = {"@odata.context": f"{request.base_url}/$metadata#users('{request.mailbox}')/contactFolders/$entity", **folder_json(folder)}
    return ok(request, body, 201, {"Location": request.url(f"users/{request.params['user']}/contactFolders/{folder_graph_id(folder.id)}")})


def _parent(request: GraphRequest) -> tuple[Folder, str]:
    """The folder a collection's path is under — the contact folder it names, else the mailbox's
    Contacts folder — and the OData context of the path up to the collection."""
    assert request.mailbox is not None
    user = f"users('{request.mailbox}')"
    if "folder" in request.params:
        return resolve_folder(request, request.params["folder"]), f"{user}/contactFolders('{request.params['folder']}')"
    return request.store.distinguished_folder(request.mailbox, "contacts"), user


def _collection_routes(
    path: str,
    operation: str,
    list_in: Callable[[GraphRequest, Folder, str], GraphResponse],
    create_in: Callable[[GraphRequest, Folder], GraphResponse],
) -> None:
    """GET lists and POST creates in the collection at ``path`` (``…/contacts``, ``…/childFolders``),
    in the folder `_parent` finds: ``list_in(request, folder, context)``, ``create_in(request, folder)``."""
    name = path.rsplit("/", 1)[-1]

    def list_handler(request: GraphRequest) -> GraphResponse:
        folder, context = _parent(request)
        return list_in(request, folder, f"{context}/{name}")

    def create_handler(request: GraphRequest) -> GraphResponse:
        return create_in(request, _parent(request)[0])

    route("GET", path, f"{operation}.list", roles=READ)(list_handler)
    route("POST", path, f"{operation}.create", roles=WRITE)(create_handler)


_collection_routes("users/{user}/contactFolders", "graph.contactFolders", _folders, _create_folder)
_collection_routes("users/{user}/contactFolders/{folder}/childFolders", "graph.contactFolders.childFolders", _folders, _create_folder)


@route("GET", "users/{user}/contactFolders/{folder}", "graph.contactFolders.get", roles=READ)
def get_folder(request: GraphRequest) -> GraphResponse:
    check_select(request.query.select, FOLDER_PROPS, "contactFolder")
    folder = resolve_folder(request, request.params["folder"])
    body = {"@odata.context": f"{request.base_url}/$metadata#users('{request.mailbox}')/contactFolders/$entity", **folder_json(folder)}
    return ok(request, apply_select(body, request.query.select))


@route("PATCH", "users/{user}/contactFolders/{folder}", "graph.contactFolders.update", roles=WRITE)
def update_folder(request: GraphRequest) -> GraphResponse:
    folder = resolve_folder(request, request.params["folder"])
    data = request.json()
    unknown = set(data) - {"displayName", "@odata.type"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "contactFolder")
    if folder.distinguished:
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    if data.get("displayName"):
        folder = request.store.rename_folder(folder.id, data["displayName"])
    return ok(request, {"@odata.context": f"{request.base_url}/$metadata#users('{request.mailbox}')/contactFolders/$entity", **folder_json(folder)})


@route("DELETE", "users/{user}/contactFolders/{folder}", "graph.contactFolders.delete", roles=WRITE)
def delete_folder(request: GraphRequest) -> GraphResponse:
    folder = resolve_folder(request, request.params["folder"])
    request.store.delete_folder(folder.id)
    return no_content()


def unknown_property(name: str, type_name: str) -> GraphError:
    return GraphError(
        400,
        "RequestBodyRead",
        f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to only use property "
        "names that are defined by the type or mark the type as open type.",
    )


# ---- contacts -----------------------------------------------------------------------------------------
SCALARS = {
    "givenName": "GivenName",
    "surname": "Surname",
    "middleName": "MiddleName",
    "displayName": "DisplayName",
    "fileAs": "FileAs",
    "initials": "Initials",
    "nickName": "Nickname",
    "generation": "Generation",
    "title": "_Title",  # no EWS element: kept for Graph only
    "jobTitle": "JobTitle",
    "companyName": "CompanyName",
    "department": "Department",
    "officeLocation": "OfficeLocation",
    "profession": "Profession",
    "businessHomePage": "BusinessHomePage",
    "assistantName": "AssistantName",
    "manager": "Manager",
    "spouseName": "SpouseName",
    "yomiGivenName": "PhoneticFirstName",
    "yomiSurname": "PhoneticLastName",
    "yomiCompanyName": "_YomiCompanyName",  # no EWS element
    "mobilePhone": None,  # in PhoneNumbers
    "personalNotes": None,  # the body
    "birthday": None,
}
LISTS = {"categories": "Categories", "children": "Children"}
PHONES = {"businessPhones": ("BusinessPhone", "BusinessPhone2"), "homePhones": ("HomePhone", "HomePhone2")}
ADDRESSES = {"businessAddress": "Business", "homeAddress": "Home", "otherAddress": "Other"}
ADDRESS_PARTS = {"street": "Street", "city": "City", "state": "State", "countryOrRegion": "CountryOrRegion", "postalCode": "PostalCode"}
READ_ONLY = {"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId", "@odata.etag", "@odata.type", "@odata.context"}
CONTACT_PROPS = (
    set(SCALARS) | set(LISTS) | set(PHONES) | set(ADDRESSES) | READ_ONLY | {"emailAddresses", "imAddresses"}
) - {"@odata.etag", "@odata.type", "@odata.context"}
EMAIL_KEYS = ("EmailAddress1", "EmailAddress2", "EmailAddress3")
IM_KEYS = ("ImAddress1", "ImAddress2", "ImAddress3")
EMAIL_NAMES = "_EmailNames"


def contact_json(request: GraphRequest, item: Item, expand: list[str] | None = None, all_extended: bool = False) -> dict[str, Any]:
    """A contact as Graph renders it (every property, null or empty when unset)."""
    props = item.props
    phones = props.get("PhoneNumbers") or {}
    emails = props.get("EmailAddresses") or {}
    names = props.get(EMAIL_NAMES) or {}
    addresses = props.get("PhysicalAddresses") or {}
    body: dict[str, Any] = {
        "@odata.etag": etag(item.changekey),
        "id": request.graph_id(item.id, item),
        "createdDateTime": utc_text(item.created),
        "lastModifiedDateTime": utc_text(item.modified),
        "changeKey": item.changekey,
        "categories": list(props.get("Categories") or []),
        "parentFolderId": folder_graph_id(item.folder_id),
        "birthday": utc_text(props.get("Birthday")),
    }
    for name, element in SCALARS.items():
        if element:
            body[name] = props.get(element)
    body["emailAddresses"] = [{"name": names.get(key) or emails[key], "address": emails[key]} for key in EMAIL_KEYS if emails.get(key)]
    ims = props.get("ImAddresses") or {}
    body["imAddresses"] = [ims[key] for key in IM_KEYS if ims.get(key)]
    body["businessPhones"] = [phones[k] for k in PHONES["businessPhones"] if phones.get(k)]
    body["homePhones"] = [phones[k] for k in PHONES["homePhones"] if phones.get(k)]
    body["mobilePhone"] = phones.get("MobilePhone")
    body["children"] = list(props.get("Children") or [])
    body["personalNotes"] = body_text(item.body_html) if props.get("Body") else None
    for name, key in ADDRESSES.items():
        parts = addresses.get(key) or {}
        body[name] = {graph: parts[ews] for graph, ews in ADDRESS_PARTS.items() if parts.get(ews)}
    if all_extended:
        body["singleValueExtendedProperties"] = extended.render(item, None)
    elif expand is None or expand:
        body["singleValueExtendedProperties"] = extended.render(item, expand)
    return body


@functools.lru_cache(maxsize=256)
def body_text(markup: str) -> str:
    """The body as plain text (Exchange keeps it as HTML; a line break is one <br> plus the source's CRLF).
    Cached: every event answered renders its bodyPreview, and many share a body."""
    return html_to_text(re.sub(r"(?i)<br\s*/?>\r?\n", "<br>", markup))


def _string(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise GraphError(400, "RequestBodyRead", f"Cannot convert a primitive value to the expected type 'Edm.String' ({name}).")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GraphError(400, "RequestBodyRead", f"'{name}' must be an array of strings.")
    return value


def contact_changes(data: dict[str, Any], current: Item | None) -> tuple[dict[str, Any], list[str], dict[Any, Any]]:
    """A contact body as store writes: (set_props, delete_props, set_extended). PATCH semantics: only what is given."""
    unknown = set(data) - CONTACT_PROPS - {"singleValueExtendedProperties", "@odata.type", "@odata.etag", "@odata.context"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "contact")
    props = current.props if current is not None else {}
    set_props: dict[str, Any] = {}
    delete: list[str] = []

    def put(element: str, value: Any) -> None:
        if value in (None, "", [], {}):
            delete.append(element)
        else:
            set_props[element] = value

    phones = dict(props.get("PhoneNumbers") or {})
    phones_touched = False
    for name, element in SCALARS.items():
        if name not in data:
            continue
        value = data[name]
        if name == "mobilePhone":
            phones.pop("MobilePhone", None)
            if _string(value, name):
                phones["MobilePhone"] = value
            phones_touched = True
        elif name == "personalNotes":
            put("Body", {"type": "Text", "content": _string(value, name)} if value else None)
        elif name == "birthday":
            put("Birthday", parse_datetime(value, name) if value else None)
        elif element:
            put(element, _string(value, name))
    for name, element in LISTS.items():
        if name in data:
            put(element, _strings(data[name], name))
    for name, keys in PHONES.items():
        if name in data:
            numbers = _strings(data[name], name)
            for index, key in enumerate(keys):
                phones.pop(key, None)
                if index < len(numbers) and numbers[index]:
                    phones[key] = numbers[index]
            phones_touched = True
    if phones_touched:
        put("PhoneNumbers", phones)
    if "emailAddresses" in data:
        entries = data["emailAddresses"] or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise GraphError(400, "RequestBodyRead", "'emailAddresses' must be an array of emailAddress objects.")
        emails: dict[str, str] = {}
        names: dict[str, str] = {}
        for key, entry in zip(EMAIL_KEYS, [e for e in entries if e.get("address")], strict=False):
            emails[key] = _string(entry["address"], "address") or ""
            if entry.get("name"):
                names[key] = _string(entry["name"], "name") or ""
        put("EmailAddresses", emails)
        put(EMAIL_NAMES, names)
    if "imAddresses" in data:
        put("ImAddresses", dict(zip(IM_KEYS, _strings(data["imAddresses"], "imAddresses"), strict=False)))
    if any(name in data for name in ADDRESSES):
        addresses = dict(props.get("PhysicalAddresses") or {})
        for name, key in ADDRESSES.items():
            if name not in data:
                continue
            value = data[name] or {}
            if not isinstance(value, dict) or set(value) - set(ADDRESS_PARTS):
                raise GraphError(400, "RequestBodyRead", f"'{name}' must be a physicalAddress object.")
            parts = {ADDRESS_PARTS[k]: _string(v, k) for k, v in value.items() if v}
            if parts:
                addresses[key] = parts
            else:
                addresses.pop(key, None)
        put("PhysicalAddresses", addresses)
    set_extended = extended.parse(current, data["singleValueExtendedProperties"]) if "singleValueExtendedProperties" in data else {}
    return set_props, delete, set_extended


def contact_item(request: GraphRequest, graph_id: str) -> Item:
    assert request.mailbox is not None
    item = request.store.item(request.store_id(graph_id))
    if item.mailbox.lower() != request.mailbox.lower() or item.kind != "Contact":
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return item


ToJson = Callable[..., dict[str, Any]]
KEEP = ("id", "singleValueExtendedProperties")


def render_entity(
    request: GraphRequest, item: Item, to_json: ToJson, props: set[str], kind: str, status: int = 200, headers: dict[str, str] | None = None
) -> GraphResponse:
    """One item as Graph answers it ($select, $expand), for contacts and events alike."""
    check_select(request.query.select, props, kind)
    body = {"@odata.context": f"{request.base_url}/$metadata#users('{request.mailbox}')/{kind}s/$entity"}
    body.update(apply_select(to_json(request, item, parse_expand(request.query.expand)), request.query.select, KEEP))
    return ok(request, body, status, headers)


def render_items(request: GraphRequest, items: list[Item], context: str, to_json: ToJson, props: set[str], kind: str) -> GraphResponse:
    """A page of items ($select, $expand, $filter), for contacts and events alike."""
    check_select(request.query.select, props, kind)
    expand = parse_expand(request.query.expand)
    predicate = compile_filter(request.query.filter)
    only_extended = filter_roots(request.query.filter) <= {"singleValueExtendedProperties"}
    out = []
    for item in items:
        if predicate is not None:
            # a lookup by sync id reads the extended properties only: skip rendering the rest
            seen = {"singleValueExtendedProperties": extended.render(item, None)} if only_extended else to_json(request, item, all_extended=True)
            if not predicate(seen):
                continue
        out.append(apply_select(to_json(request, item, expand), request.query.select, KEEP))
    return collection(request, out, context, page_size=request.front.page_size)


def entity(request: GraphRequest, item: Item, status: int = 200, headers: dict[str, str] | None = None) -> GraphResponse:
    return render_entity(request, item, contact_json, CONTACT_PROPS, "contact", status, headers)


def _list(request: GraphRequest, folder: Folder, context: str) -> GraphResponse:
    items = sorted(request.store.live_items(folder.id, "Contact"), key=lambda i: i.created_seq)
    return render_items(request, items, context, contact_json, CONTACT_PROPS, "contact")


def _create(request: GraphRequest, folder: Folder) -> GraphResponse:
    set_props, _, set_extended = contact_changes(request.json(), None)
    # rendered live, as stored (the handler holds the store lock): no copy of it
    item = request.store.live_item(request.store.add_item(folder.id, "Contact", set_props, set_extended))
    location = request.url(f"users/{request.params['user']}/contacts/{request.graph_id(item.id, item)}")
    return entity(request, item, 201, {"Location": location})


_collection_routes("users/{user}/contacts", "graph.contacts", _list, _create)
_collection_routes("users/{user}/contactFolders/{folder}/contacts", "graph.contacts", _list, _create)


def _get(request: GraphRequest) -> GraphResponse:
    return entity(request, contact_item(request, request.params["id"]))


def _update(request: GraphRequest) -> GraphResponse:
    item = contact_item(request, request.params["id"])
    check_if_match(request, item.changekey)
    set_props, delete, set_extended = contact_changes(request.json(), item)
    updated = request.store.update_item(item.id, set_props=set_props, delete_props=delete, set_extended=set_extended)
    return entity(request, updated)


def _delete(request: GraphRequest) -> GraphResponse:
    item = contact_item(request, request.params["id"])
    check_if_match(request, item.changekey)
    request.store.delete_item(item.id, "MoveToDeletedItems")  # Graph's DELETE keeps it in Deleted Items
    return no_content()


def _permanent_delete(request: GraphRequest) -> GraphResponse:
    item = contact_item(request, request.params["id"])
    request.store.delete_item(item.id, "HardDelete")
    return no_content()


for _prefix in ("users/{user}/contacts/{id}", "users/{user}/contactFolders/{folder}/contacts/{id}"):
    route("GET", _prefix, "graph.contacts.get", roles=READ)(_get)
    route("PATCH", _prefix, "graph.contacts.update", roles=WRITE)(_update)
    route("DELETE", _prefix, "graph.contacts.delete", roles=WRITE)(_delete)
    route("POST", f"{_prefix}/permanentDelete", "graph.contacts.permanentDelete", roles=WRITE)(_permanent_delete)
