"""mod_rest in JSON (README: mod_rest): POST /rest takes the community module's JSON mapping (with
`stanza` besides) and answers in JSON when asked (the request's type, or Accept); with
rest_callback_content_type = "application/json", callbacks are POSTed in the shape of
component_http's requests, in the community module's field names, and JSON answers are the
replies. The mapping's own fields: test_jsonmap.py."""

import json

import pytest

from e2e_webhook import Reply
from test_options import error_lines
from test_rest import REST, TOKEN, XMPP_XML, first_message, post, start

JSON = "application/json"
BOT_JID = f"bot@{REST}"


@pytest.fixture
def rest(prosody_factory, connect):
    prosody, port = start(prosody_factory, {REST: {"rest_credentials": TOKEN}})
    return prosody, port, connect(prosody)


def test_a_json_push_of_a_message_reaches_the_client_and_comes_back_as_sent(rest):
    _, port, alice = rest
    since = alice.mark()
    status, headers, body = post(port, json.dumps({"to": "alice@localhost", "from": BOT_JID, "id": "hello-1",
                                                   "body": "Hello in JSON"}), content_type=JSON)
    assert status == 202 and headers["Content-Type"] == JSON, body
    sent = json.loads(body)
    assert {k: sent[k] for k in ("kind", "type", "from", "to", "id", "body")} == {
        "kind": "message", "type": "chat", "from": BOT_JID, "to": "alice@localhost", "id": "hello-1",
        "body": "Hello in JSON"}
    assert sent["stanza"].startswith("<message") and "<body>Hello in JSON</body>" in sent["stanza"]
    msg = first_message(alice, since)
    assert (msg.frm, msg.type, msg.id, msg.body) == (BOT_JID, "chat", "hello-1", "Hello in JSON")


def test_a_json_iq_push_gets_the_clients_result_as_json(rest):
    _, port, alice = rest
    alice.register_plugin("xep_0092", {"software_name": "Alice client", "version": "1.2"})
    iq = {"to": alice.full_jid, "id": "v1", "stanza": "<iq type='get'><query xmlns='jabber:iq:version'/></iq>"}
    status, headers, body = post(port, json.dumps(iq), content_type=JSON)
    assert status == 200 and headers["Content-Type"] == JSON, body
    answer = json.loads(body)
    assert {k: answer[k] for k in ("kind", "type", "id", "from", "to")} == {
        "kind": "iq", "type": "result", "id": "v1", "from": alice.full_jid, "to": REST}
    assert "<name>Alice client</name><version>1.2</version>" in answer["stanza"], answer["stanza"]


@pytest.mark.parametrize("body,content_type,accept,answered_in", [
    ("<message to='alice@localhost'><body>asked</body></message>", XMPP_XML, JSON, JSON),
    ('{"to": "alice@localhost", "body": "asked"}', JSON, XMPP_XML, XMPP_XML),
    ('{"to": "alice@localhost", "body": "asked"}', JSON, "*/*", JSON),
], ids=["xml-accepting-json", "json-accepting-xml", "json-accepting-anything"])
def test_accept_chooses_the_answers_format(rest, body, content_type, accept, answered_in):
    _, port, alice = rest
    since = alice.mark()
    status, headers, text = post(port, body, content_type=content_type, accept=accept)
    assert status == 202 and headers["Content-Type"] == answered_in, text
    if answered_in == JSON:
        assert json.loads(text)["body"] == "asked"
    else:
        assert text.startswith("<message") and "<body>asked</body>" in text
    assert first_message(alice, since).body == "asked"


@pytest.mark.parametrize("body,status,reason", [
    ("{'to': 'alice@localhost'}", 400, "invalid JSON"),
    ('["alice@localhost", "hi"]', 400, "expected a JSON object"),
    ('{"body": "to nobody"}', 400, "the stanza has no 'to'"),
    ('{"to": 7, "body": "x"}', 400, "'to' must be a string"),
    ('{"to": "alice@localhost", "kind": "carrier-pigeon"}', 400, "carrier-pigeon"),
    ('{"to": "alice@localhost", "stanza": "<message><body>x</body>"}', 400, "'stanza'"),
    ('{"to": "alice@localhost", "from": "admin@localhost", "body": "I am admin"}', 403, "not on this component"),
], ids=["not-json", "not-an-object", "no-to", "to-a-number", "unknown-kind", "broken-stanza", "spoofed-from"])
def test_a_bad_json_push_gets_its_status_and_reason_as_json_and_nothing_is_routed(rest, body, status, reason):
    prosody, port, alice = rest
    since = alice.mark()
    got, headers, text = post(port, body, content_type=JSON)
    assert got == status and headers["Content-Type"] == JSON, text
    # The community module's error body: {"type": "error", "error": {...}, "code": N}.
    refusal = json.loads(text)
    assert (refusal["type"], refusal["code"]) == ("error", status) and reason in refusal["error"]["text"], text
    assert refusal["error"]["condition"] == {400: "bad-request", 403: "forbidden"}[status], text
    post(port, '{"to": "alice@localhost", "body": "marker"}', content_type=JSON)
    assert first_message(alice, since).body == "marker"
    assert prosody.alive()


def test_json_callbacks_reach_the_webhook_as_json_and_json_answers_reach_the_client(prosody_factory, connect,
                                                                                     webhook):
    def answer(req):
        if req.json.get("body") == "XML, please":
            return Reply(status=200, body="<message><body>a reply in XML</body></message>",
                         headers={"Content-Type": XMPP_XML})
        if req.json["kind"] == "iq":
            return Reply.with_json({"stanza": "<iq><query xmlns='jabber:iq:version'><name>JSON bot</name>"
                                              "</query></iq>"})
        return Reply.with_json({"id": "reply-1", "body": f"You said {req.json['body']}"})

    webhook.handler = answer
    prosody, _ = start(prosody_factory, {REST: {"rest_callback_url": webhook.url(),
                                                "rest_callback_content_type": JSON}})
    alice = connect(prosody)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "Hello")
    (req,) = webhook.wait_for_requests(1)
    assert req.header("content-type") == JSON
    assert {k: req.json[k] for k in ("kind", "type", "id", "from", "to", "body")} == {
        "kind": "message", "type": "chat", "id": mid, "from": alice.full_jid, "to": BOT_JID, "body": "Hello"}
    assert req.json["stanza"].startswith("<message") and "<body>Hello</body>" in req.json["stanza"]
    reply = first_message(alice, since)
    assert (reply.frm, reply.type, reply.id, reply.body) == (BOT_JID, "chat", "reply-1", "You said Hello")

    iid = alice.send_iq_get(BOT_JID, "<query xmlns='jabber:iq:version'/>")
    result = alice.wait_for(lambda s: s.name == "iq" and s.id == iid, since=since)
    assert [r.json["kind"] for r in webhook.requests] == ["message", "iq"]
    assert (result.type, result.frm) == ("result", BOT_JID)
    assert result.child("query", "jabber:iq:version")[0].text == "JSON bot"

    # An answer in the other type the module reads is a reply too, as in the community module.
    since = alice.mark()
    alice.send_message(BOT_JID, "XML, please")
    alice.send_message(BOT_JID, "and now?")
    assert [m.body for m in alice.wait_for_count(lambda s: s.name == "message", 2, since=since)] == \
        ["a reply in XML", "You said and now?"]
    assert [r.json.get("body") for r in webhook.requests][-2:] == ["XML, please", "and now?"]


def test_an_unknown_callback_content_type_stops_the_module_naming_the_option(prosody_factory, connect, webhook):
    prosody, _ = start(prosody_factory, {REST: {"rest_callback_url": webhook.url(),
                                                "rest_callback_content_type": "text/xml"}})
    assert prosody.alive()
    named = [line for line in error_lines(prosody) if "rest_callback_content_type" in line]
    assert named, "no error naming rest_callback_content_type:\n" + "\n".join(error_lines(prosody))
    alice = connect(prosody)
    mid = alice.send_message(BOT_JID, "anyone?")
    alice.wait_for(lambda s: s.id == mid and s.type == "error", what="Prosody's bounce")
    assert webhook.requests == []
