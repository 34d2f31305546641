"""Mail: ``/users/{id}/mailFolders/{folder}`` (+ ``messages``, ``messages/delta``), ``/users/{id}/messages/{id}``
(GET, PATCH, DELETE, ``send``, ``attachments``), ``POST /users/{id}/messages`` (a draft) and ``sendMail``.

One store, two front ends: a mail folder is a message folder of the mailbox (class ``IPF.Note``) and its
messages are the folder's ``t:Message`` items (`exchange_sim.messages` holds what both share: Internet
message ids, drafts, delivery). Well-known folder names: ``inbox``, ``sentitems``, ``drafts``,
``deleteditems``, ``archive``, ``junkemail``, ``outbox``, ``msgfolderroot``.

``message_json`` is the one rendering of a message (GET, lists, delta). Bodies are answered as stored
(HTML, or text), or as text with ``Prefer: outlook.body-content-type="text"``. ``$expand=attachments``
(optionally ``($select=name,size)``) lists attachments without their content; ``GET …/attachments`` gives the
content too. PATCH writes ``categories``, ``isRead``, ``importance`` on any message and ``subject``, ``body``,
recipients on a draft only. A delta round behaves as the contacts' (`exchange_sim.graph.delta`): ``$select`` is
baked into the tokens, removed messages come as ``@removed``. Deviation: ``$filter`` / ``$orderby`` /
``$top`` on delta are refused (Graph allows a few); child folders are reached by their id only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from exchange_sim import mail
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
from exchange_sim.graph.contacts import mailbox_folder, unknown_property
from exchange_sim.graph.delta import delta_answer, gone, page_size, removed, token_of
from exchange_sim.graph.errors import GraphError, bad_request
from exchange_sim.graph.events import IMPORTANCE
from exchange_sim.graph.ids import folder_graph_id
from exchange_sim.graph.odata import apply_select, check_select, compile_filter
from exchange_sim.graph.values import utc_text
from exchange_sim.store import Folder, Item, StoreError

READ = ("Mail.Read", "Mail.ReadWrite")
WRITE = ("Mail.ReadWrite",)
SEND = ("Mail.Send",)
WELL_KNOWN = (
    "inbox",
    "sentitems",
    "drafts",
    "deleteditems",
    "archive",
    "junkemail",
    "outbox",
    "msgfolderroot",
)
RECIPIENTS = {
    "toRecipients": "ToRecipients",
    "ccRecipients": "CcRecipients",
    "bccRecipients": "BccRecipients",
}
MESSAGE_PROPS = {
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime", "sentDateTime",
    "hasAttachments", "internetMessageId", "subject", "bodyPreview", "importance", "parentFolderId", "isRead", "isDraft",
    "body", "sender", "from", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "webLink",
}  # fmt: skip
DRAFT_ONLY = {"subject", "body", *RECIPIENTS}
ANY_MESSAGE = {"categories", "isRead", "importance"}
ATTACHMENT_PROPS = {"id", "name", "contentType", "size", "isInline", "lastModifiedDateTime"}
NOT_FOUND = "The specified object was not found in the store."
_EXPAND = re.compile(r"^\s*attachments\s*(?:\(\s*\$select\s*=\s*([^)]*)\))?\s*$", re.IGNORECASE)


# ---- folders ----------------------------------------------------------------------------------------------
def mail_folder(request: GraphRequest, ref: str) -> Folder:
    """A mail folder of the request's mailbox by Graph id or well-known name."""
    well_known = ref.lower() if ref.lower() in WELL_KNOWN else "inbox"
    return mailbox_folder(request, ref, well_known, "IPF.Note")


def folder_json(request: GraphRequest, folder: Folder) -> dict[str, Any]:
    total, children, unread = request.store.folder_counts(folder.id)
    return {
        "id": folder_graph_id(folder.id),
        "displayName": folder.display_name,
        "parentFolderId": folder_graph_id(folder.parent_id) if folder.parent_id else None,
        "childFolderCount": children,
        "unreadItemCount": unread,
        "totalItemCount": total,
        "isHidden": False,
    }


@route("GET", "users/{user}/mailFolders/{folder}", "graph.mailFolders.get", roles=READ)
def get_folder(request: GraphRequest) -> GraphResponse:
    folder = mail_folder(request, request.params["folder"])
    body = {
        "@odata.context": f"{request.base_url}/$metadata#users('{request.mailbox}')/mailFolders/$entity",
        **folder_json(request, folder),
    }
    return ok(request, apply_select(body, request.query.select))


@route("GET", "users/{user}/mailFolders/{folder}/childFolders", "graph.mailFolders.children", roles=READ)
def child_folders(request: GraphRequest) -> GraphResponse:
    parent = mail_folder(request, request.params["folder"])
    folders = [
        folder_json(request, f)
        for f in request.store.child_folders(parent.id)
        if f.folder_class == "IPF.Note"
    ]
    context = f"users('{request.mailbox}')/mailFolders('{request.params['folder']}')/childFolders"
    return collection(request, [apply_select(f, request.query.select) for f in folders], context)


# ---- rendering --------------------------------------------------------------------------------------------
def address_json(mailbox: dict[str, Any] | None) -> dict[str, Any]:
    mailbox = mailbox or {}
    address = mailbox.get("EmailAddress") or ""
    return {"emailAddress": {"name": mailbox.get("Name") or address, "address": address}}


def attachment_json(item: Item, attachment: dict[str, Any], content: bool = False) -> dict[str, Any]:
    kind = "fileAttachment" if attachment.get("type", "File") == "File" else "itemAttachment"
    out: dict[str, Any] = {
        "@odata.type": f"#microsoft.graph.{kind}",
        "id": f"{item.id}:{attachment['key']}",
        "lastModifiedDateTime": utc_text(attachment.get("LastModifiedTime")),
        "name": attachment.get("Name") or "",
        "contentType": attachment.get("ContentType") or "application/octet-stream",
        "size": attachment.get("Size") or 0,
        "isInline": bool(attachment.get("IsInline")),
    }
    if content and kind == "fileAttachment":
        out["contentBytes"] = attachment.get("Content") or ""
    return out


def expanded_attachments(request: GraphRequest) -> list[str] | None:
    """``$expand=attachments`` (None: not asked) and the attachment properties it selects ([]: all)."""
    text = (request.query.expand or "").strip()
    if not text:
        return None
    found = _EXPAND.match(text)
    if not found:
        raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named '{text.split('(')[0].strip()}' on type "
                          "'microsoft.graph.message'.")  # fmt: skip
    names = [n.strip() for n in (found.group(1) or "").split(",") if n.strip()]
    check_select(names, ATTACHMENT_PROPS, "attachment")
    return names


def message_json(request: GraphRequest, item: Item, attachments: list[str] | None = None) -> dict[str, Any]:
    """The one rendering of a message; ``attachments`` as `expanded_attachments` answers."""
    props = item.props
    stored = props.get("Body") or {}
    if request.prefer.text_body or stored.get("type") != "HTML":
        body = {"contentType": "text", "content": item.body_text}
    else:
        body = {"contentType": "html", "content": item.body_html}
    out: dict[str, Any] = {
        "@odata.etag": etag(item.changekey),
        "id": request.graph_id(item.id, item),
        "createdDateTime": utc_text(item.created),
        "lastModifiedDateTime": utc_text(item.modified),
        "changeKey": item.changekey,
        "categories": list(props.get("Categories") or []),
        "receivedDateTime": utc_text(props.get("DateTimeReceived") or item.created),
        "sentDateTime": utc_text(props.get("DateTimeSent")),
        "hasAttachments": item.has_attachments,
        "internetMessageId": props.get("InternetMessageId"),
        "subject": props.get("Subject") or "",
        "bodyPreview": item.body_text[:255],
        "importance": IMPORTANCE.get(props.get("Importance") or "Normal", "normal"),
        "parentFolderId": folder_graph_id(item.folder_id),
        "isRead": bool(props.get("IsRead")),
        "isDraft": bool(props.get("IsDraft")),
        "body": body,
        "sender": address_json(props.get("Sender")) if props.get("Sender") else None,
        "from": address_json(props.get("From")) if props.get("From") else None,
        **{name: [address_json(m) for m in props.get(element) or []] for name, element in RECIPIENTS.items()},
        "replyTo": [address_json(m) for m in props.get("ReplyTo") or []],
        # As Exchange Online answers it: the message in Outlook on the web (read-only).
        "webLink": f"https://outlook.office365.com/owa/?ItemID={quote(request.graph_id(item.id, item), safe='')}&exvsurl=1&viewmodel=ReadMessageItem",
    }
    if attachments is not None:
        rendered = [attachment_json(item, a) for a in props.get("Attachments") or []]
        out["attachments"] = [apply_select(a, attachments or None) for a in rendered]
    return out


def entity(
    request: GraphRequest, item: Item, status: int = 200, headers: dict[str, str] | None = None
) -> GraphResponse:
    check_select(request.query.select, MESSAGE_PROPS, "message")
    rendered = message_json(request, item, expanded_attachments(request))
    body = {
        "@odata.context": f"{request.base_url}/$metadata#users('{request.mailbox}')/messages/$entity",
        **rendered,
    }
    return ok(request, apply_select(body, request.query.select, ("id", "attachments")), status, headers)


# ---- writing ----------------------------------------------------------------------------------------------
def _recipients(value: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise GraphError(400, "RequestBodyRead", f"'{name}' must be an array of recipients.")
    out = []
    for entry in value:
        address = ((entry or {}).get("emailAddress") or {}) if isinstance(entry, dict) else {}
        if not address.get("address"):
            raise bad_request(f"A recipient in '{name}' has no address.", "ErrorInvalidRecipients")
        out.append(
            {
                "Name": address.get("name") or address["address"],
                "EmailAddress": address["address"],
                "RoutingType": "SMTP",
            }
        )
    return out


def message_changes(data: dict[str, Any], draft: bool) -> tuple[dict[str, Any], list[str]]:
    """A message body as store writes (set, delete); PATCH semantics. A sent or received message takes only
    categories, isRead and importance, as Outlook's."""
    unknown = set(data) - MESSAGE_PROPS - {"@odata.type", "@odata.etag", "@odata.context"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "message")
    if not draft and set(data) & DRAFT_ONLY:
        raise GraphError(
            400, "ErrorInvalidPropertyUpdateSentMessage", "Update to a sent message is not allowed."
        )
    set_props: dict[str, Any] = {}
    delete: list[str] = []
    if "subject" in data:
        set_props["Subject"] = data["subject"] or ""
    if "body" in data:
        content = data["body"] or {}
        kind = "HTML" if str(content.get("contentType") or "text").lower() == "html" else "Text"
        set_props["Body"] = {"type": kind, "content": content.get("content") or ""}
    for name, element in RECIPIENTS.items():
        if name in data:
            set_props[element] = _recipients(data[name] or [], name)
    if "categories" in data:
        values = data["categories"] or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise GraphError(400, "RequestBodyRead", "'categories' must be an array of strings.")
        if values:
            set_props["Categories"] = values
        else:
            delete.append("Categories")
    if "isRead" in data:
        set_props["IsRead"] = bool(data["isRead"])
    if "importance" in data:
        inverse = {v: k for k, v in IMPORTANCE.items()}
        if data["importance"] not in inverse:
            raise GraphError(
                400, "RequestBodyRead", f"The value '{data['importance']}' is not valid for 'importance'."
            )
        set_props["Importance"] = inverse[data["importance"]]
    return set_props, delete


def message_item(request: GraphRequest) -> Item:
    try:
        item = request.store.item(request.store_id(request.params["id"]))
    except StoreError as err:
        if err.code == "ErrorInvalidIdMalformed":
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND) from None
    assert request.mailbox is not None
    if item.mailbox.lower() != request.mailbox.lower() or item.kind != "Message":
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
    return item


def _new_draft(request: GraphRequest, data: dict[str, Any]) -> Item:
    assert request.mailbox is not None
    set_props, _ = message_changes(data, draft=True)
    set_props["IsDraft"] = True
    return request.store.create_item(
        request.store.distinguished_folder(request.mailbox, "drafts").id, "Message", set_props
    )


# ---- routes -----------------------------------------------------------------------------------------------
MESSAGES = "users/{user}/messages"


@route("GET", "users/{user}/mailFolders/{folder}/messages", "graph.messages.list", roles=READ)
def list_messages(request: GraphRequest) -> GraphResponse:
    folder = mail_folder(request, request.params["folder"])
    check_select(request.query.select, MESSAGE_PROPS, "message")
    expand = expanded_attachments(request)
    predicate = compile_filter(request.query.filter)
    out = []
    for item in sorted(request.store.live_items(folder.id, "Message"), key=lambda i: i.created_seq):
        rendered = message_json(request, item, expand)
        if predicate is None or predicate(rendered):
            out.append(apply_select(rendered, request.query.select, ("id", "attachments")))
    context = f"users('{request.mailbox}')/mailFolders('{request.params['folder']}')/messages"
    return collection(request, out, context, page_size=request.front.page_size)


@route("POST", MESSAGES, "graph.messages.create", roles=WRITE)
def create_message(request: GraphRequest) -> GraphResponse:
    item = _new_draft(request, request.json())
    return entity(
        request,
        item,
        201,
        {
            "Location": request.url(
                f"users/{request.params['user']}/messages/{request.graph_id(item.id, item)}"
            )
        },
    )


@route("GET", f"{MESSAGES}/{{id}}", "graph.messages.get", roles=READ)
def get_message(request: GraphRequest) -> GraphResponse:
    return entity(request, message_item(request))


@route("PATCH", f"{MESSAGES}/{{id}}", "graph.messages.update", roles=WRITE)
def update_message(request: GraphRequest) -> GraphResponse:
    item = message_item(request)
    check_if_match(request, item.changekey)
    set_props, delete = message_changes(request.json(), draft=bool(item.props.get("IsDraft")))
    return entity(request, request.store.update_item(item.id, set_props=set_props, delete_props=delete))


@route("DELETE", f"{MESSAGES}/{{id}}", "graph.messages.delete", roles=WRITE)
def delete_message(request: GraphRequest) -> GraphResponse:
    item = message_item(request)
    request.store.delete_item(item.id, "MoveToDeletedItems")
    return no_content()


@route("POST", f"{MESSAGES}/{{id}}/send", "graph.messages.send", roles=SEND)
def send_draft(request: GraphRequest) -> GraphResponse:
    item = message_item(request)
    if not item.props.get("IsDraft"):
        raise GraphError(400, "ErrorInvalidOperation", "Only a draft can be sent.")
    mail.send(request.store, item.id)
    return GraphResponse(202, None, {})


@route("POST", "users/{user}/sendMail", "graph.users.sendMail", roles=SEND)
def send_mail(request: GraphRequest) -> GraphResponse:
    data = request.json()
    message = data.get("message")
    if not isinstance(message, dict) or (not message.get("toRecipients") and not message.get("ccRecipients")):
        raise bad_request("At least one recipient is required.", "ErrorInvalidRecipients")
    item = _new_draft(request, message)
    mail.send(request.store, item.id, save_copy=data.get("saveToSentItems", True) is not False)
    return GraphResponse(202, None, {})


@route("GET", f"{MESSAGES}/{{id}}/attachments", "graph.attachments.list", roles=READ)
def list_attachments(request: GraphRequest) -> GraphResponse:
    item = message_item(request)
    check_select(request.query.select, ATTACHMENT_PROPS | {"contentBytes"}, "attachment")
    values = [
        apply_select(attachment_json(item, a, content=True), request.query.select)
        for a in item.props.get("Attachments") or []
    ]
    return collection(
        request, values, f"users('{request.mailbox}')/messages('{request.params['id']}')/attachments"
    )


@route("GET", "users/{user}/mailFolders/{folder}/messages/delta", "graph.messages.delta", roles=READ)
def messages_delta(request: GraphRequest) -> GraphResponse:
    """Changes of a mail folder since the last round (nextLink → deltaLink, as the contacts' delta)."""
    front = request.front
    folder = mail_folder(request, request.params["folder"])
    request.query.refuse("$filter", "$expand", "$orderby", "$search", "$top", where="message delta")
    token = token_of(request)
    if token is not None:
        if front.sim.faults.take("invalid_sync_state", request.operation, request.mailbox):
            raise gone()
        payload = front.deltas.decode(token, "messages")
        if payload.get("f") != folder.id:
            raise gone()
        state, select = payload["s"], payload.get("sel")
    else:
        check_select(request.query.select, MESSAGE_PROPS, "message")
        state, select = None, request.query.select
    try:
        changes, new_state, done = request.store.sync_folder_items(folder.id, state, page_size(request))
    except StoreError as err:
        if err.code == "ErrorInvalidSyncStateData":
            raise gone() from None
        raise
    values: list[dict[str, Any]] = []
    for op, change in changes:
        if op == "Delete":
            assert isinstance(change, str)
            values.append(removed(request.graph_id(change), "message"))
        elif isinstance(change, Item) and change.kind == "Message":
            values.append(apply_select(message_json(request, change), select))
    next_token = front.deltas.encode({"k": "messages", "f": folder.id, "s": new_state, "sel": select})
    return delta_answer(request, values, next_token, done, "message")
