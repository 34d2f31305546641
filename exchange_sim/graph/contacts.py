"""Contact folders and contacts: ``/users/{id}/contactFolders`` (+ childFolders), contacts in a folder.

The well-known name ``contacts`` stands for the default Contacts folder (``contactFolders/contacts``);
``/users/{id}/contactFolders`` lists the folders below it, ``/users/{id}/contacts`` the contacts in it.
Contacts cannot be moved through v1.0: a client moves one by creating it elsewhere and deleting it.
"""

from __future__ import annotations

from typing import Any

from exchange_sim.graph.api import GraphRequest, GraphResponse, collection, no_content, ok, route
from exchange_sim.graph.errors import GraphError, bad_request
from exchange_sim.graph.ids import folder_graph_id, store_id_from_rest
from exchange_sim.graph.odata import apply_select, check_select, compile_filter
from exchange_sim.store import Folder, StoreError

READ = ("Contacts.Read", "Contacts.ReadWrite")
WRITE = ("Contacts.ReadWrite",)
FOLDER_PROPS = {"id", "displayName", "parentFolderId"}


# ---- folders ------------------------------------------------------------------------------------------
def resolve_folder(request: GraphRequest, ref: str) -> Folder:
    """A contact folder of the request's mailbox by Graph id or the well-known name ``contacts``."""
    assert request.mailbox is not None
    store = request.store
    if ref.lower() == "contacts":
        return store.distinguished_folder(request.mailbox, "contacts")
    try:
        folder = store.folder(store_id_from_rest(ref))
    except StoreError as err:
        if err.code == "ErrorInvalidIdMalformed":
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.") from None
    if folder.mailbox.lower() != request.mailbox.lower() or folder.folder_class != "IPF.Contact":
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return folder


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


@route("GET", "users/{user}/contactFolders", "graph.contactFolders.list", roles=READ)
def list_folders(request: GraphRequest) -> GraphResponse:
    assert request.mailbox is not None
    parent = request.store.distinguished_folder(request.mailbox, "contacts")
    return _folders(request, parent, f"users('{request.mailbox}')/contactFolders")


@route("POST", "users/{user}/contactFolders", "graph.contactFolders.create", roles=WRITE)
def create_folder(request: GraphRequest) -> GraphResponse:
    assert request.mailbox is not None
    return _create_folder(request, request.store.distinguished_folder(request.mailbox, "contacts"))


@route("GET", "users/{user}/contactFolders/{folder}/childFolders", "graph.contactFolders.childFolders.list", roles=READ)
def list_child_folders(request: GraphRequest) -> GraphResponse:
    parent = resolve_folder(request, request.params["folder"])
    return _folders(request, parent, f"users('{request.mailbox}')/contactFolders('{request.params['folder']}')/childFolders")


@route("POST", "users/{user}/contactFolders/{folder}/childFolders", "graph.contactFolders.childFolders.create", roles=WRITE)
def create_child_folder(request: GraphRequest) -> GraphResponse:
    return _create_folder(request, resolve_folder(request, request.params["folder"]))


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
