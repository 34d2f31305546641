"""ConvertId and ResolveNames.

Id formats: the simulator's EwsId is the canonical form; the other formats are reversible encodings
of it (so a client can convert there and back), not Exchange's real binary layouts.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, unquote

from exchange_sim.ews.codec import Shape, render_item
from exchange_sim.ews.operations import RequestContext, Responder, operation
from exchange_sim.ews.xmlutil import Element, local, m, sub, t
from exchange_sim.store import Item, StoreError

XSI = "http://www.w3.org/2001/XMLSchema-instance"
ENTRY_PREFIX = b"\x00\x00\x00\x00SIM"


def to_ews_id(fmt: str, value: str) -> str:
    try:
        if fmt == "EwsId":
            return value
        if fmt == "EwsLegacyId":
            return base64.b64decode(value).decode().removeprefix("LEGACY:")
        if fmt == "EntryId":
            return base64.b64decode(value).removeprefix(ENTRY_PREFIX).decode()
        if fmt == "HexEntryId":
            return bytes.fromhex(value).removeprefix(ENTRY_PREFIX).decode()
        if fmt == "StoreId":
            return base64.b64decode(value).decode().removeprefix("STORE:")
        if fmt == "OwaId":
            return unquote(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise StoreError("ErrorInvalidIdMalformed", "Id is malformed.")


def from_ews_id(fmt: str, ews_id: str) -> str:
    raw = ews_id.encode()
    return {
        "EwsId": lambda: ews_id,
        "EwsLegacyId": lambda: base64.b64encode(b"LEGACY:" + raw).decode(),
        "EntryId": lambda: base64.b64encode(ENTRY_PREFIX + raw).decode(),
        "HexEntryId": lambda: (ENTRY_PREFIX + raw).hex().upper(),
        "StoreId": lambda: base64.b64encode(b"STORE:" + raw).decode(),
        "OwaId": lambda: quote(ews_id, safe=""),
    }[fmt]()


@operation("ConvertId")
def convert_id(ctx: RequestContext, req: Element) -> Element:
    out = Responder("ConvertId")
    destination = req.get("DestinationFormat", "EwsId")
    for source in req.find(m("SourceIds")):
        try:
            if local(source) != "AlternateId":
                raise StoreError("ErrorInvalidOperation", "Public folder ids are not supported.")
            ews_id = to_ews_id(source.get("Format", "EwsId"), source.get("Id", ""))
            mailbox = source.get("Mailbox", ctx.target)
            alt = sub(out.success(), m("AlternateId"), Format=destination, Id=from_ews_id(destination, ews_id), Mailbox=mailbox)
            alt.set(f"{{{XSI}}}type", "t:AlternateIdType")
        except StoreError as err:
            out.error(err)
    return out.root


def _candidates(ctx: RequestContext, entry: str) -> list[tuple[dict[str, str], Item | None]]:
    needle = entry.lower().removeprefix("smtp:")
    found: list[tuple[dict[str, str], Item | None]] = []
    for mailbox in ctx.store.mailboxes():
        names = [mailbox.address.lower(), *mailbox.display_name.lower().split(), mailbox.display_name.lower()]
        if needle == mailbox.address.lower() or any(n.startswith(needle) for n in names):
            found.append(({"Name": mailbox.display_name, "EmailAddress": mailbox.address, "RoutingType": "SMTP", "MailboxType": "Mailbox"}, None))
    if ctx.target and ctx.store.has_mailbox(ctx.target):
        contacts = ctx.store.items(ctx.store.distinguished_folder(ctx.target, "contacts").id, "Contact")
        for contact in contacts:
            emails = [e.lower() for e in (contact.props.get("EmailAddresses") or {}).values()]
            names = [str(contact.props.get(k, "")).lower() for k in ("DisplayName", "GivenName", "Surname")]
            if needle in emails or any(n and n.startswith(needle) for n in names):
                address = next(iter((contact.props.get("EmailAddresses") or {}).values()), "")
                found.append(({"Name": contact.props.get("DisplayName", ""), "EmailAddress": address, "RoutingType": "SMTP", "MailboxType": "Contact"}, contact))
    return found


@operation("ResolveNames")
def resolve_names(ctx: RequestContext, req: Element) -> Element:
    out = Responder("ResolveNames")
    full = req.get("ReturnFullContactData", "false").lower() == "true"
    for entry in req.findall(m("UnresolvedEntry")):
        found = _candidates(ctx, entry.text or "")[:100]
        if not found:
            out.error(StoreError("ErrorNameResolutionNoResults", "No results were found."))
            continue
        if len(found) == 1:
            msg = out.success()
        else:
            # several candidates: a Warning, and the candidates are still listed
            msg = out.error(StoreError("ErrorNameResolutionMultipleResults", "Multiple results were found."))
            msg.set("ResponseClass", "Warning")
        resolution_set = sub(msg, m("ResolutionSet"), TotalItemsInView=str(len(found)), IncludesLastItemInRange="true")
        for mailbox, contact in found:
            _render_resolution(resolution_set, mailbox, contact, full)
    return out.root


def _render_resolution(parent: Element, mailbox: dict[str, str], contact: Item | None, full: bool) -> None:
    resolution = sub(parent, t("Resolution"))
    mailbox_elem = sub(resolution, t("Mailbox"))
    for part in ("Name", "EmailAddress", "RoutingType", "MailboxType"):
        if mailbox.get(part):
            sub(mailbox_elem, t(part), mailbox[part])
    if contact is not None:
        sub(mailbox_elem, t("ItemId"), Id=contact.id, ChangeKey=contact.changekey)
    if full:
        if contact is not None:
            shape = Shape(base="Default")
            elem = render_item(resolution, contact, shape)
            elem.remove(elem.find(t("ItemId")))
            for name in ("ParentFolderId",):
                found = elem.find(t(name))
                if found is not None:
                    elem.remove(found)
        else:
            elem = sub(resolution, t("Contact"))
            sub(elem, t("DisplayName"), mailbox["Name"])
            emails = sub(elem, t("EmailAddresses"))
            sub(emails, t("Entry"), f"SMTP:{mailbox['EmailAddress']}", Key="EmailAddress1")


def install(simulator: Any) -> None:
    return None
