"""iq forwarding (component_post_stanzas = {"message", "iq"})."""

import xml.etree.ElementTree as ET

import pytest

from e2e_webhook import Reply

BOT_OPTIONS = {"component_post_stanzas": ["message", "iq"]}
BOT_JID = "echo@bot.localhost"
VERSION_QUERY = "<query xmlns='jabber:iq:version'/>"


def iq_with_id(iid):
    return lambda s: s.name == "iq" and s.id == iid


def exactly_one_response(client, iid, since):
    """Wait for the response to iq `iid`; a sentinel message through the bot afterwards proves
    that no second one was on its way."""
    first = client.wait_for(iq_with_id(iid), since=since, what=f"response to iq {iid}")
    client.expect_quiet(since, ignore=lambda s: s is first)
    return first


@pytest.mark.parametrize("to", [BOT_JID, "bot.localhost", BOT_JID + "/res"], ids=["bare", "host", "full"])
def test_iq_get_answered_with_webhook_payload(hook, alice, to):
    hook.respond_json({"stanza": "<iq><query xmlns='jabber:iq:version'><name>bot</name></query></iq>"})
    since = alice.mark()
    iid = alice.send_iq_get(to, VERSION_QUERY)
    res = exactly_one_response(alice, iid, since)
    assert res.type == "result", res.xml
    assert res.frm == to
    assert res.to == alice.full_jid
    q = res.child("query", "jabber:iq:version")
    assert q is not None, res.xml
    assert [(c.tag, c.text) for c in q] == [("{jabber:iq:version}name", "bot")]


def test_iq_request_shape(hook, alice):
    since = alice.mark()
    iid = alice.send_iq_get(BOT_JID, VERSION_QUERY)
    (req,) = hook.wait_for_requests(1)
    data = req.json
    # The seed's fields, and the mapping's name for the query (as the community mod_rest has it:
    # a version request is "version": {}).
    assert set(data) == {"to", "from", "kind", "id", "type", "stanza", "version"}
    assert data["version"] == {}
    assert data["kind"] == "iq"
    assert (data["id"], data["type"]) == (iid, "get")
    assert data["to"] == BOT_JID
    assert data["from"] == alice.full_jid
    assert data["stanza"].startswith("<iq")
    el = ET.fromstring(data["stanza"])
    assert el.get("id") == iid and el.get("type") == "get"
    assert el.find("{jabber:iq:version}query") is not None
    exactly_one_response(alice, iid, since)


def test_iq_set_204_gives_empty_result(hook, alice):
    hook.respond(204)
    since = alice.mark()
    iid = alice.send_iq(BOT_JID, "set", "<command xmlns='urn:example:e2e'>go</command>")
    res = exactly_one_response(alice, iid, since)
    assert res.type == "result"
    assert list(res.el) == [], res.xml
    assert res.frm == BOT_JID


@pytest.mark.parametrize("reply", [
    Reply(status=204),
    Reply(status=200, body="ok", headers={"Content-Type": "text/plain"}),
    Reply.with_json({"body": "ignored"}, status=201),
], ids=["204", "200-text", "201-json"])
def test_iq_get_accepted_without_reply_gives_empty_result(hook, alice, reply):
    hook.handler = lambda req: reply
    since = alice.mark()
    iid = alice.send_iq_get(BOT_JID, VERSION_QUERY)
    res = exactly_one_response(alice, iid, since)
    assert res.type == "result"
    assert list(res.el) == [], res.xml


def test_iq_get_500_gives_error(hook, alice):
    hook.respond(500, body="broken")
    since = alice.mark()
    iid = alice.send_iq_get(BOT_JID, VERSION_QUERY)
    res = exactly_one_response(alice, iid, since)
    assert res.type == "error"
    assert res.error == ("cancel", "internal-server-error", None)
    assert res.frm == BOT_JID


@pytest.mark.parametrize("iq_type", ["result", "error"])
@pytest.mark.parametrize("reply", [
    Reply(status=500),
    Reply.with_json({"stanza": "<iq><query xmlns='jabber:iq:version'/></iq>"}),
    Reply(status=204),
], ids=["500", "200-json", "204"])
def test_iq_result_and_error_are_posted_but_never_answered(hook, alice, iq_type, reply):
    hook.handler = lambda req: reply
    since = alice.mark()
    payload = ("<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
               if iq_type == "error" else "")
    iid = alice.send_iq(BOT_JID, iq_type, payload)
    (req,) = hook.wait_for_requests(1)
    assert req.json["kind"] == "iq"
    assert ET.fromstring(req.json["stanza"]).get("type") == iq_type
    assert ET.fromstring(req.json["stanza"]).get("id") == iid
    alice.expect_quiet(since)


def test_messages_still_forwarded_with_iq(hook, alice):
    hook.respond_json({"body": "msg ok"})
    since = alice.mark()
    alice.send_message(BOT_JID, "hi")
    reply = alice.wait_for(lambda s: s.name == "message" and s.frm == BOT_JID, since=since)
    assert reply.body == "msg ok"


def test_iq_reply_body_without_stanza(hook, alice):
    """A JSON reply without `stanza` to an iq still yields exactly one response."""
    hook.respond_json({"body": "text"})
    since = alice.mark()
    iid = alice.send_iq_get(BOT_JID, VERSION_QUERY)
    res = exactly_one_response(alice, iid, since)
    # README: kind defaults to "iq" when answering an iq, and `body` is only for messages.
    assert res.type == "result" and res.el.find("*") is None, res.xml
