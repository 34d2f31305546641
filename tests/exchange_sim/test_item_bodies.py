"""Bodies keep the format they were written in; BodyType HTML / Text converts on the way out (EWS BodyType)."""

from __future__ import annotations

from exchangelib import HTMLBody, Message
from lxml import etree

from exchange_sim import Simulator

from .test_schema import post

T = "{http://schemas.microsoft.com/exchange/services/2006/types}"


def get_body(sim: Simulator, item_id: str, body_type: str) -> tuple[str, str]:
    status, answer = post(
        sim,
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
        f"<t:BodyType>{body_type}</t:BodyType>"
        '<t:AdditionalProperties><t:FieldURI FieldURI="item:Body"/></t:AdditionalProperties></m:ItemShape>'
        f'<m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:GetItem>',
    )
    assert status == 200
    body = etree.fromstring(answer).find(f".//{T}Body")
    return body.get("BodyType"), body.text or ""


def test_a_text_body_comes_back_as_text(account):
    item = Message(account=account, folder=account.drafts, subject="Note", body="line one\nline <two>")
    item.save()
    body = account.drafts.get(id=item.id).body
    assert not isinstance(body, HTMLBody)
    assert body == "line one\nline <two>"


def test_an_html_body_comes_back_as_html(account):
    item = Message(account=account, folder=account.drafts, subject="Note", body=HTMLBody("<p>Hi <b>there</b></p>"))
    item.save()
    body = account.drafts.get(id=item.id).body
    assert isinstance(body, HTMLBody) and "<b>there</b>" in body


def test_body_type_html_converts_a_text_body(account, exchange_sim: Simulator):
    item = Message(account=account, folder=account.drafts, subject="Note", body="line one\nline <two>")
    item.save()
    kind, content = get_body(exchange_sim, item.id, "HTML")
    assert kind == "HTML"
    assert "line one<br>" in content and "&lt;two&gt;" in content
    assert get_body(exchange_sim, item.id, "Best") == ("Text", "line one\nline <two>")


def test_body_type_text_converts_an_html_body(account, exchange_sim: Simulator):
    item = Message(account=account, folder=account.drafts, subject="Note", body=HTMLBody("<p>Hi <b>there</b></p>"))
    item.save()
    assert get_body(exchange_sim, item.id, "Text") == ("Text", "Hi there")
