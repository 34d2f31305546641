"""Every request and response is checked against messages.xsd / types.xsd when the schema folder exists."""

from __future__ import annotations

import base64
import copy
import urllib.request

from lxml import etree

from exchange_sim import Simulator
from exchange_sim.ews.xmlutil import SOAP
from exchange_sim.schema import SchemaValidator
from tests.conftest import ews_schema_dir, require

ENVELOPE = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    '<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body>{body}</s:Body></s:Envelope>'
)


def post(sim: Simulator, body: str, envelope: str = ENVELOPE) -> tuple[int, bytes]:
    auth = base64.b64encode(b"svc@contoso.example:demo-password").decode()
    request = urllib.request.Request(
        sim.url,
        data=envelope.format(body=body).encode(),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "text/xml", "X-AnchorMailbox": "alice@contoso.example"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_fixture_validates_when_the_schema_folder_exists(exchange_sim: Simulator):
    require(ews_schema_dir() is not None, "EWS schema folder (EWS_SCHEMA_DIR)")
    assert exchange_sim.validator is not None


def test_a_request_that_breaks_the_schema_is_refused_and_recorded(exchange_sim_factory):
    require(ews_schema_dir() is not None, "EWS schema folder (EWS_SCHEMA_DIR)")
    sim = exchange_sim_factory()
    status, body = post(sim, "<m:GetFolder><m:NoSuchThing/></m:GetFolder>")
    assert status == 500
    assert b"ErrorSchemaValidation" in body
    assert [v.direction for v in sim.schema_violations] == ["request"]
    sim.schema_violations.clear()  # this test caused it on purpose


def test_a_response_that_breaks_the_schema_is_recorded():
    schema_dir = ews_schema_dir()
    require(schema_dir is not None, "EWS schema folder (EWS_SCHEMA_DIR)")
    validator = SchemaValidator(schema_dir)
    envelope = etree.fromstring(
        ENVELOPE.format(body="<m:GetFolderResponse><m:ResponseMessages><m:Bogus/></m:ResponseMessages></m:GetFolderResponse>")
    )
    [violation] = validator.validate(envelope, "response", "GetFolder")
    assert violation.element == "GetFolderResponse"


def test_a_valid_exchange_passes(exchange_sim: Simulator, account):
    require(ews_schema_dir() is not None, "EWS schema folder (EWS_SCHEMA_DIR)")
    account.contacts.all().count()
    assert exchange_sim.schema_violations == []


def test_naive_times_are_read_in_the_time_zone_context(exchange_sim: Simulator):
    envelope = ENVELOPE.replace(
        "</s:Header>",
        '<t:TimeZoneContext><t:TimeZoneDefinition Id="W. Europe Standard Time"/></t:TimeZoneContext></s:Header>',
    )
    body = (
        '<m:CreateItem MessageDisposition="SaveOnly" SendMeetingInvitations="SendToNone"><m:Items><t:CalendarItem>'
        "<t:Subject>Naive</t:Subject><t:Start>2027-07-01T10:00:00</t:Start><t:End>2027-07-01T11:00:00</t:End>"
        "</t:CalendarItem></m:Items></m:CreateItem>"
    )
    status, _ = post(exchange_sim, body, envelope)
    assert status == 200
    [event] = exchange_sim.user("alice@contoso.example").events()
    assert event.props["Start"].hour == 8  # 10:00 Berlin summer time is 08:00 UTC


def test_validation_in_place_leaves_the_envelope_as_it_was_and_finds_what_a_copy_finds():
    schema_dir = ews_schema_dir()
    require(schema_dir is not None, "EWS schema folder (EWS_SCHEMA_DIR)")
    validator = SchemaValidator(schema_dir)
    good = "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id='inbox'/></m:FolderIds></m:GetFolder>"
    bad = "<m:GetFolder><m:FolderShape><t:BaseShape>Everything</t:BaseShape></m:FolderShape></m:GetFolder>"
    for body, expected in ((good, 0), (bad, 1)):
        envelope = etree.fromstring(ENVELOPE.format(body=body))
        before = etree.tostring(envelope)
        found = validator.validate(envelope, "request", "GetFolder")
        assert etree.tostring(envelope) == before
        # what the element copied into a document of its own answers
        copied = etree.ElementTree(copy.deepcopy(envelope.find(f"{{{SOAP}}}Body")[0]))
        assert len(found) == expected == (0 if validator._schema.validate(copied) else 1)
