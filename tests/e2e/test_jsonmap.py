"""The one JSON mapping (README: "The JSON contract", "mod_rest"): mod_rest's JSON pushes speak the
community module's fields, the kind inferred from them (a ping is an iq, a presence has its
<show/>), and a field it cannot map is refused naming it, never dropped; component_http's
requests and replies carry the same fields besides its own."""

import json

import pytest

from conftest import BOT
from e2e_webhook import Reply
from test_rest import REST, TOKEN, first_message, post, start

JSON = "application/json"
BOT_JID = f"echo@{BOT}"
NS_CLIENT = "jabber:client"


@pytest.fixture
def rest(prosody_factory, connect):
    prosody, port = start(prosody_factory, {REST: {"rest_credentials": TOKEN}})
    return prosody, port, connect(prosody)


def push(port, fields):
    return post(port, json.dumps(fields), content_type=JSON)


def test_a_pushed_ping_is_an_iq_and_its_result_comes_back(rest):
    _, port, _ = rest
    status, headers, body = push(port, {"to": "localhost", "id": "ping-1", "ping": True})
    assert status == 200 and headers["Content-Type"] == JSON, body
    answer = json.loads(body)
    assert (answer["kind"], answer["type"], answer["id"], answer["from"]) == ("iq", "result", "ping-1", "localhost")


def test_a_pushed_presence_carries_its_show_and_status(rest):
    _, port, alice = rest
    since = alice.mark()
    status, _, body = push(port, {"kind": "presence", "to": alice.full_jid, "show": "away", "status": "Out to lunch"})
    assert status == 202, body
    assert (json.loads(body)["show"], json.loads(body)["status"]) == ("away", "Out to lunch")
    got = alice.wait_for(lambda s: s.name == "presence" and s.frm == REST, since=since)
    assert (got.child("show", NS_CLIENT).text, got.child("status", NS_CLIENT).text) == ("away", "Out to lunch")


def test_a_pushed_message_carries_its_subject_and_thread(rest):
    _, port, alice = rest
    since = alice.mark()
    status, _, body = push(port, {"to": "alice@localhost", "body": "Minutes attached.", "subject": "Weekly",
                                  "thread": {"id": "t-42"}})
    assert status == 202, body
    msg = first_message(alice, since)
    assert msg.body == "Minutes attached."
    assert (msg.child("subject", NS_CLIENT).text, msg.child("thread", NS_CLIENT).text) == ("Weekly", "t-42")


@pytest.mark.parametrize("fields,named", [
    ({"to": "alice@localhost", "body": "x", "sticker": {"id": 1}}, "'sticker'"),
    ({"to": "alice@localhost", "body": "x", "error_code": 404}, "'error_code'"),
    ({"kind": "presence", "to": "alice@localhost", "body": "x"}, "'body'"),
], ids=["unknown", "unmapped", "not-for-the-kind"])
def test_a_field_that_cannot_be_mapped_is_refused_naming_it_and_nothing_is_sent(rest, fields, named):
    prosody, port, alice = rest
    since = alice.mark()
    status, headers, body = push(port, fields)
    assert status == 400 and headers["Content-Type"] == JSON, body
    assert named in json.loads(body)["error"]["text"], body  # the community module's error body
    push(port, {"to": "alice@localhost", "body": "marker"})
    assert first_message(alice, since).body == "marker"
    assert prosody.alive()


def test_component_http_posts_and_sends_the_new_fields(hook, alice):
    hook.handler = lambda req: Reply.with_json({
        "body": f"Re: {req.json['subject']}", "subject": req.json["subject"], "thread": req.json["thread"]})
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "on topic", extra="<subject>Plans</subject><thread>t-7</thread>")
    (request,) = hook.wait_for_requests(1)
    assert request.json["id"] == mid
    assert (request.json["subject"], request.json["thread"]) == ("Plans", {"id": "t-7"}), request.json
    got = alice.wait_for(lambda s: s.name == "message" and s.body == "Re: Plans", since=since)
    assert (got.child("subject", NS_CLIENT).text, got.child("thread", NS_CLIENT).text) == ("Plans", "t-7")
