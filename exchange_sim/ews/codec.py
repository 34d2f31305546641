"""Translation between EWS item/folder XML and the store's plain property values.

The element order and XSD type of every property come from `schema_order.ORDER` (Microsoft's
types.xsd), so what we emit validates and what we parse lands under Exchange's own names.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from exchange_sim.ews.schema_order import ORDER
from exchange_sim.ews.xmlutil import Element, T, format_datetime, local, parse_datetime, sub, t
from exchange_sim.store import ExtendedKey, Folder, Item, StoreError

TYPES: dict[str, dict[str, str]] = {kind: dict(order) for kind, order in ORDER.items()}

INT_TYPES = {"xs:int", "xs:long", "t:ReminderMinutesBeforeStartType"}
DICT_TYPES = {"t:EmailAddressDictionaryType", "t:PhoneNumberDictionaryType", "t:ImAddressDictionaryType"}
INDEXED_ELEMENTS = {
    "EmailAddress": "EmailAddresses",
    "PhoneNumber": "PhoneNumbers",
    "ImAddress": "ImAddresses",
    "PhysicalAddress": "PhysicalAddresses",
}
MAILBOX_ORDER = ("Name", "EmailAddress", "RoutingType", "MailboxType")
ADDRESS_ORDER = ("Street", "City", "State", "CountryOrRegion", "PostalCode")
PATTERN_ORDER = ("Interval", "DaysOfWeek", "FirstDayOfWeek", "DayOfWeekIndex", "DayOfMonth", "Month")
# Properties the server computes; clients may not set them.
READ_ONLY = {"ItemId", "ParentFolderId", "DateTimeCreated", "LastModifiedTime", "Size", "HasAttachments"}
FOLDER_TAGS = {"IPF.Contact": "ContactsFolder", "IPF.Appointment": "CalendarFolder", "IPF.Task": "TasksFolder"}


@dataclass(frozen=True)
class FieldPath:
    """What a FieldURI / IndexedFieldURI / ExtendedFieldURI points at."""

    element: str | None = None
    index: str | None = None
    sub: str | None = None
    extended: ExtendedKey | None = None


@dataclass
class Shape:
    base: str = "AllProperties"
    additional: list[FieldPath] = field(default_factory=list)
    body_type: str = "Best"

    def elements(self) -> set[str]:
        return {p.element for p in self.additional if p.element}

    def extended(self) -> list[ExtendedKey]:
        return [p.extended for p in self.additional if p.extended]


def xsd_type(kind: str, name: str) -> str | None:
    return TYPES.get(kind, TYPES["Item"]).get(name)


# ---- paths and shapes ------------------------------------------------------------------------------
def parse_path(elem: Element) -> FieldPath:
    name = local(elem)
    if name == "ExtendedFieldURI":
        return FieldPath(extended=parse_extended_key(elem))
    uri = elem.get("FieldURI", "")
    parts = uri.split(":")
    if name == "IndexedFieldURI":
        base = INDEXED_ELEMENTS.get(parts[1], parts[1])
        return FieldPath(element=base, index=elem.get("FieldIndex"), sub=parts[2] if len(parts) > 2 else None)
    return FieldPath(element=parts[-1] if len(parts) > 1 else uri)


def parse_extended_key(elem: Element) -> ExtendedKey:
    return ExtendedKey.create(
        elem.get("PropertyType", "String"),
        property_set_id=elem.get("PropertySetId"),
        distinguished_set=elem.get("DistinguishedPropertySetId"),
        name=elem.get("PropertyName"),
        prop_id=elem.get("PropertyId"),
        tag=elem.get("PropertyTag"),
    )


def parse_shape(elem: Element | None) -> Shape:
    if elem is None:
        return Shape(base="IdOnly")
    shape = Shape(base=elem.findtext(t("BaseShape")) or "IdOnly")
    shape.body_type = elem.findtext(t("BodyType")) or "Best"
    props = elem.find(t("AdditionalProperties"))
    if props is not None:
        shape.additional = [parse_path(p) for p in props]
    return shape


def render_extended_key(parent: Element, key: ExtendedKey) -> Element:
    attrs: dict[str, str] = {}
    if key.distinguished_set:
        attrs["DistinguishedPropertySetId"] = key.distinguished_set
    if key.property_set_id:
        attrs["PropertySetId"] = key.property_set_id
    if key.tag is not None:
        attrs["PropertyTag"] = hex(key.tag)
    if key.name is not None:
        attrs["PropertyName"] = key.name
    if key.prop_id is not None:
        attrs["PropertyId"] = str(key.prop_id)
    attrs["PropertyType"] = key.prop_type
    return sub(parent, t("ExtendedFieldURI"), **attrs)


# ---- values ----------------------------------------------------------------------------------------
def parse_value(elem: Element, typ: str | None) -> Any:
    text = elem.text or ""
    if typ == "xs:boolean":
        return text.strip().lower() in {"true", "1"}
    if typ in INT_TYPES:
        return int(text.strip())
    if typ == "xs:dateTime":
        return parse_datetime(text)
    if typ == "t:ArrayOfStringsType":
        return [c.text or "" for c in elem]
    if typ == "t:BodyType":
        return {"type": elem.get("BodyType", "Text"), "content": text}
    if typ in DICT_TYPES:
        return {entry.get("Key"): (entry.text or "") for entry in elem}
    if typ == "t:PhysicalAddressDictionaryType":
        return {entry.get("Key"): {local(c): c.text or "" for c in entry} for entry in elem}
    if typ == "t:SingleRecipientType":
        mailbox = elem.find(t("Mailbox"))
        return parse_mailbox(mailbox) if mailbox is not None else {}
    if typ == "t:ArrayOfRecipientsType":
        return [parse_mailbox(mb) for mb in elem]
    if typ == "t:NonEmptyArrayOfAttendeesType":
        return [parse_attendee(a) for a in elem]
    if typ == "t:TimeZoneDefinitionType":
        return elem.get("Id")
    if typ == "t:RecurrenceType":
        return parse_recurrence(elem)
    if typ and (typ.startswith("xs:") or (typ.endswith("Type") and len(elem) == 0 and not elem.attrib)):
        return text
    return {"$xml": etree.tostring(elem, encoding="unicode")}


def parse_mailbox(elem: Element) -> dict[str, str]:
    return {local(c): c.text or "" for c in elem if local(c) in MAILBOX_ORDER}


def parse_attendee(elem: Element) -> dict[str, Any]:
    attendee: dict[str, Any] = {"Mailbox": parse_mailbox(elem.find(t("Mailbox")))}
    response = elem.findtext(t("ResponseType"))
    if response:
        attendee["ResponseType"] = response
    when = elem.findtext(t("LastResponseTime"))
    if when:
        attendee["LastResponseTime"] = parse_datetime(when)
    return attendee


def parse_recurrence(elem: Element) -> dict[str, Any]:
    pattern, rng = elem[0], elem[1]
    return {
        "pattern": {"type": local(pattern), **{local(c): c.text or "" for c in pattern}},
        "range": {"type": local(rng), **{local(c): c.text or "" for c in rng}},
    }


def render_value(parent: Element, name: str, value: Any, typ: str | None) -> None:
    if isinstance(value, dict) and "$xml" in value:
        parent.append(etree.fromstring(value["$xml"]))
        return
    tag = t(name)
    if typ == "xs:boolean":
        sub(parent, tag, "true" if value else "false")
    elif isinstance(value, datetime):
        sub(parent, tag, format_datetime(value))
    elif typ == "t:ArrayOfStringsType":
        container = sub(parent, tag)
        for text in value:
            sub(container, t("String"), text)
    elif typ == "t:BodyType":
        sub(parent, tag, value.get("content", ""), BodyType=value.get("type", "HTML"))
    elif typ in DICT_TYPES:
        container = sub(parent, tag)
        for key, text in value.items():
            sub(container, t("Entry"), text, Key=key)
    elif typ == "t:PhysicalAddressDictionaryType":
        container = sub(parent, tag)
        for key, parts in value.items():
            entry = sub(container, t("Entry"), Key=key)
            for part in ADDRESS_ORDER:
                if parts.get(part) is not None:
                    sub(entry, t(part), parts[part])
    elif typ == "t:SingleRecipientType":
        render_mailbox(sub(parent, tag), value)
    elif typ == "t:ArrayOfRecipientsType":
        container = sub(parent, tag)
        for mailbox in value:
            render_mailbox(container, mailbox)
    elif typ == "t:NonEmptyArrayOfAttendeesType":
        if value:
            render_attendees(sub(parent, tag), value)
    elif typ == "t:TimeZoneDefinitionType":
        sub(parent, tag, Id=value)
    elif typ == "t:RecurrenceType":
        render_recurrence(sub(parent, tag), value)
    else:
        sub(parent, tag, str(value))


def render_mailbox(parent: Element, mailbox: dict[str, str]) -> None:
    elem = sub(parent, t("Mailbox"))
    for part in MAILBOX_ORDER:
        if mailbox.get(part):
            sub(elem, t(part), mailbox[part])


def render_attendees(parent: Element, attendees: list[dict[str, Any]]) -> None:
    for attendee in attendees:
        elem = sub(parent, t("Attendee"))
        render_mailbox(elem, attendee.get("Mailbox", {}))
        if attendee.get("ResponseType"):
            sub(elem, t("ResponseType"), attendee["ResponseType"])
        if attendee.get("LastResponseTime"):
            sub(elem, t("LastResponseTime"), format_datetime(attendee["LastResponseTime"]))


def render_recurrence(parent: Element, value: dict[str, Any]) -> None:
    pattern = sub(parent, t(value["pattern"]["type"]))
    for part in PATTERN_ORDER:
        if value["pattern"].get(part) not in (None, ""):
            sub(pattern, t(part), str(value["pattern"][part]))
    rng = value["range"]
    range_elem = sub(parent, t(rng["type"]))
    for part in ("StartDate", "NumberOfOccurrences", "EndDate"):
        if rng.get(part) not in (None, ""):
            sub(range_elem, t(part), str(rng[part]))


# ---- items -----------------------------------------------------------------------------------------
def parse_item(elem: Element) -> tuple[str, dict[str, Any], dict[ExtendedKey, Any]]:
    """A t:Contact / t:CalendarItem / ... element into (kind, props, extended)."""
    kind = local(elem)
    props: dict[str, Any] = {}
    extended: dict[ExtendedKey, Any] = {}
    for child in elem:
        name = local(child)
        if name == "ExtendedProperty":
            key, value = parse_extended_property(child)
            extended[key] = value
        elif name == "Attachments":
            props[name] = [parse_attachment(a) for a in child]
        elif name not in READ_ONLY:
            props[name] = parse_value(child, xsd_type(kind, name))
    return kind, props, extended


# ---- attachments -----------------------------------------------------------------------------------
ATTACHMENT_FIELDS = ("Name", "ContentType", "ContentId", "ContentLocation")


def parse_attachment(elem: Element) -> dict[str, Any]:
    """A t:FileAttachment / t:ItemAttachment as the store keeps it (an attached item as kind, props, extended)."""
    attachment: dict[str, Any] = {"type": "File" if local(elem) == "FileAttachment" else "Item"}
    for child in elem:
        name = local(child)
        if name in ATTACHMENT_FIELDS:
            attachment[name] = child.text or ""
        elif name in {"IsInline", "IsContactPhoto"}:
            attachment[name] = (child.text or "").strip().lower() in {"true", "1"}
        elif name == "Content":
            attachment["Content"] = (child.text or "").strip()
        elif name not in {"AttachmentId", "Size", "LastModifiedTime"} and attachment["type"] == "Item":
            kind, props, extended = parse_item(child)
            attachment["Item"] = {"kind": kind, "props": props, "extended": [[k.as_dict(), v] for k, v in extended.items()]}
    return attachment


def attachment_id(item_id: str, key: str) -> str:
    """An attachment's id names its item, as Exchange's do (an id from before a move no longer resolves)."""
    return base64.b64encode(b"AT" + bytes.fromhex(key) + item_id.encode()).decode()


def split_attachment_id(value: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise StoreError("ErrorInvalidIdMalformed", "Id is malformed.") from None
    if len(raw) < 19 or not raw.startswith(b"AT"):
        raise StoreError("ErrorInvalidIdMalformed", "Id is malformed.")
    return raw[18:].decode(errors="replace"), raw[2:18].hex()


def render_attachment_id(parent: Element, item: Item, key: str, root: bool = True) -> Element:
    attrs = {"Id": attachment_id(item.id, key)}
    if root:
        attrs.update(RootItemId=item.id, RootItemChangeKey=item.changekey)
    return sub(parent, t("AttachmentId"), **attrs)


def render_attachment(
    parent: Element, item: Item, attachment: dict[str, Any], full: bool = False, computed: Any = None
) -> Element:
    """An attachment of ``item``: its summary (GetItem) or, ``full``, with its content (GetAttachment)."""
    kind = attachment.get("type", "File")
    elem = sub(parent, t(f"{kind}Attachment"))
    render_attachment_id(elem, item, attachment["key"], root=False)
    for name in ATTACHMENT_FIELDS:
        if attachment.get(name) is not None:
            sub(elem, t(name), attachment[name])
    sub(elem, t("Size"), str(attachment.get("Size", 0)))
    if attachment.get("LastModifiedTime"):
        sub(elem, t("LastModifiedTime"), format_datetime(attachment["LastModifiedTime"]))
    sub(elem, t("IsInline"), "true" if attachment.get("IsInline") else "false")
    if kind == "File":
        if attachment.get("IsContactPhoto") is not None:
            sub(elem, t("IsContactPhoto"), "true" if attachment["IsContactPhoto"] else "false")
        if full:
            sub(elem, t("Content"), attachment.get("Content") or "")
    elif full and attachment.get("Item"):
        attached = attached_item(item, attachment)
        render_item(elem, attached, Shape(base="AllProperties"), computed(attached) if computed else None, with_id=False)
    return elem


def attached_item(parent: Item, attachment: dict[str, Any]) -> Item:
    """The item inside an ItemAttachment, as a transient Item (no id of its own)."""
    data = attachment["Item"]
    extended = {ExtendedKey(**k): v for k, v in data.get("extended") or []}
    return Item(
        id="", changekey="", mailbox=parent.mailbox, folder_id="", kind=data["kind"], props=copy.deepcopy(data["props"]),
        extended=extended, created=attachment.get("LastModifiedTime"), modified=attachment.get("LastModifiedTime"),
    )


def parse_extended_property(elem: Element) -> tuple[ExtendedKey, Any]:
    key = parse_extended_key(elem.find(t("ExtendedFieldURI")))
    values = elem.find(t("Values"))
    if values is not None:
        return key, [v.text or "" for v in values]
    return key, elem.findtext(t("Value")) or ""


def wanted_elements(item: Item, shape: Shape, elements: set[str] | None = None) -> set[str]:
    """`elements`: shape.elements(), when the caller has it already."""
    wanted = (shape.elements() if elements is None else elements) | {"ItemId"}
    if shape.base in {"Default", "AllProperties"}:
        wanted |= set(item.props) | {"ParentFolderId", "DateTimeCreated", "LastModifiedTime", "Size"}
    return wanted


def item_values(item: Item, computed: dict[str, Any] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = dict(item.props)
    values["DateTimeCreated"] = item.created
    values["LastModifiedTime"] = item.modified
    values["Size"] = 512 + len(str(item.props))
    values["HasAttachments"] = item.has_attachments
    if item.props.get("Body"):
        values["TextBody"] = {"type": "Text", "content": item.body_text}
    values.update(computed or {})
    return values


def render_item(
    parent: Element,
    item: Item,
    shape: Shape,
    computed: dict[str, Any] | None = None,
    tag: str | None = None,
    with_id: bool = True,
) -> Element:
    kind = tag or item.kind
    elem = sub(parent, t(kind))
    values = item_values(item, computed)
    elements = shape.elements()  # once per item: a shape names a hundred properties
    wanted = wanted_elements(item, shape, elements) | set(computed or {}) & elements
    if shape.base in {"Default", "AllProperties"}:
        wanted |= set(computed or {})
    for name, typ in ORDER.get(kind, ORDER["Item"]):
        # the kind's order names well over a hundred elements, an item has a few dozen: the others
        # (all but ExtendedProperty, which answers the shape's extended properties) go at once
        if name not in wanted and name != "ExtendedProperty":
            continue
        if name in {"ItemId", "ParentFolderId"} and not with_id:
            continue  # an attached item has neither
        if name == "ItemId":
            sub(elem, t("ItemId"), Id=item.id, ChangeKey=item.changekey)
        elif name == "ParentFolderId" and "ParentFolderId" in wanted:
            sub(elem, t("ParentFolderId"), Id=item.folder_id, ChangeKey="AQAAAA==")
        elif name == "Attachments":
            if name in wanted and item.props.get("Attachments"):
                container = sub(elem, t("Attachments"))
                for attachment in item.props["Attachments"]:
                    render_attachment(container, item, attachment)
        elif name == "ExtendedProperty":
            render_extended_values(elem, item, shape.extended())
        elif name in wanted and values.get(name) is not None:
            value = values[name]
            if name == "Body" and shape.body_type == "Text":
                value = {"type": "Text", "content": item.body_text}
            elif name == "Body" and shape.body_type == "HTML":
                value = {"type": "HTML", "content": item.body_html}
            render_value(elem, name, value, typ)
    return elem


def render_extended_values(parent: Element, item: Item, keys: Iterable[ExtendedKey]) -> None:
    for key in keys:
        value = item.extended.get(key)
        if value is None:
            continue
        prop = sub(parent, t("ExtendedProperty"))
        render_extended_key(prop, key)
        if isinstance(value, list):
            values = sub(prop, t("Values"))
            for v in value:
                sub(values, t("Value"), v)
        else:
            sub(prop, t("Value"), str(value))


def complete_name(item: Item) -> dict[str, Any]:
    """Exchange's computed CompleteName of a contact."""
    parts = [("FirstName", "GivenName"), ("MiddleName", "MiddleName"), ("LastName", "Surname"), ("Suffix", "Generation"),
             ("Initials", "Initials"), ("FullName", "DisplayName"), ("Nickname", "Nickname")]
    elem = etree.Element(t("CompleteName"), nsmap={"t": T})
    for tag, prop in parts:
        if item.props.get(prop):
            sub(elem, t(tag), str(item.props[prop]))
    return {"$xml": etree.tostring(elem, encoding="unicode")}


def item_ref(parent: Element, item: Item) -> Element:
    """The id of a created item, with the ids of its attachments (CreateItem's answer)."""
    elem = sub(parent, t(item.kind))
    sub(elem, t("ItemId"), Id=item.id, ChangeKey=item.changekey)
    if item.props.get("Attachments"):
        container = sub(elem, t("Attachments"))
        for attachment in item.props["Attachments"]:
            kind = attachment.get("type", "File")
            render_attachment_id(sub(container, t(f"{kind}Attachment")), item, attachment["key"], root=False)
    return elem


# ---- updates ---------------------------------------------------------------------------------------
def merge_indexed(props: dict[str, Any], path: FieldPath, new: dict[str, Any] | None) -> None:
    """Apply one IndexedFieldURI set (new given) or delete (new None) to a dict-valued property."""
    current = copy.deepcopy(props.get(path.element) or {})
    if path.element == "PhysicalAddresses":
        entry = dict(current.get(path.index) or {})
        if new is None:
            if path.sub:
                entry.pop(path.sub, None)
            else:
                entry = {}
        else:
            entry.update((new or {}).get(path.index, {}))
        if entry:
            current[path.index] = entry
        else:
            current.pop(path.index, None)
    elif new is None:
        current.pop(path.index, None)
    else:
        current.update({k: v for k, v in new.items() if k == path.index} or new)
    if current:
        props[path.element] = current
    else:
        props.pop(path.element, None)


# ---- folders ---------------------------------------------------------------------------------------
def folder_tag(folder: Folder) -> str:
    """The element a folder is answered as: by its class, sub-classes too (IPF.Contact.GalContacts)."""
    folder_class = folder.folder_class or ""
    for prefix, tag in FOLDER_TAGS.items():
        if folder_class == prefix or folder_class.startswith(prefix + "."):
            return tag
    return "Folder"


FOLDER_FIELDS = ("ParentFolderId", "FolderClass", "DisplayName", "TotalCount", "ChildFolderCount", "DistinguishedFolderId", "UnreadCount")


def render_folder(
    parent: Element, folder: Folder, counts: tuple[int, ...], full: bool = True, shape: Shape | None = None
) -> Element:
    """A folder as FindFolder / GetFolder / SyncFolderHierarchy answer it. With a FolderShape of
    IdOnly only the folder properties it names come back (exchangelib's ``only()``)."""
    tag = folder_tag(folder)
    elem = sub(parent, t(tag))
    sub(elem, t("FolderId"), Id=folder.id, ChangeKey=folder.changekey)
    if not full:
        return elem
    wanted = set(FOLDER_FIELDS) if shape is None or shape.base != "IdOnly" else shape.elements()
    total, children, unread = (*counts, 0, 0, 0)[:3]
    if folder.parent_id and "ParentFolderId" in wanted:
        sub(elem, t("ParentFolderId"), Id=folder.parent_id, ChangeKey="AQAAAA==")
    if folder.folder_class and "FolderClass" in wanted:
        sub(elem, t("FolderClass"), folder.folder_class)
    if "DisplayName" in wanted:
        sub(elem, t("DisplayName"), folder.display_name)
    if "TotalCount" in wanted:
        sub(elem, t("TotalCount"), str(total))
    if "ChildFolderCount" in wanted:
        sub(elem, t("ChildFolderCount"), str(children))
    if folder.distinguished and "DistinguishedFolderId" in wanted:
        sub(elem, t("DistinguishedFolderId"), folder.distinguished)
    if tag in {"Folder", "TasksFolder"} and "UnreadCount" in wanted:
        sub(elem, t("UnreadCount"), str(unread))
    return elem
