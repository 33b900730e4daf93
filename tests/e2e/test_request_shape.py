"""What the webhook receives: method, headers, path, JSON fields."""

import base64
import xml.etree.ElementTree as ET

from conftest import BOT

MESSAGE_KEYS = {"to", "from", "kind", "id", "type", "stanza", "body"}


def media_type(req):
    return (req.header("content-type") or "").split(";")[0].strip().lower()


def parse_stanza(text):
    return ET.fromstring(text)


def test_message_with_body(hook, alice):
    mid = alice.send_message("echo@bot.localhost", "hello")
    (req,) = hook.wait_for_requests(1)
    assert req.method == "POST"
    assert req.path == "/hook"
    assert media_type(req) == "application/json"
    data = req.json
    assert isinstance(data, dict), req.raw_body
    assert set(data) == MESSAGE_KEYS
    assert data["to"] == "echo@bot.localhost"
    assert data["from"] == alice.full_jid
    assert data["kind"] == "message"
    assert data["body"] == "hello"
    assert (data["id"], data["type"]) == (mid, "chat")
    assert data["stanza"].startswith("<message")
    assert "<body>hello</body>" in data["stanza"]
    el = parse_stanza(data["stanza"])
    assert el.get("id") == mid
    assert el.get("type") == "chat"
    assert el.get("to") == "echo@bot.localhost"
    assert el.get("from") == alice.full_jid
    # Prosody serialises attributes with single quotes; the module passes that on.
    assert f"id='{mid}'" in data["stanza"]


def test_message_without_body_has_no_body_key(hook, alice):
    alice.send_message("echo@bot.localhost", None,
                       extra="<active xmlns='http://jabber.org/protocol/chatstates'/>")
    (req,) = hook.wait_for_requests(1)
    data = req.json
    assert data["kind"] == "message"
    assert "body" not in data
    assert set(data) == MESSAGE_KEYS - {"body"}
    assert "http://jabber.org/protocol/chatstates" in data["stanza"]


def test_no_id_or_type_key_when_the_stanza_has_none(hook, alice):
    alice.send_raw("<message to='echo@bot.localhost'><body>bare</body></message>")
    (req,) = hook.wait_for_requests(1)
    assert set(req.json) == MESSAGE_KEYS - {"id", "type"}


def test_special_characters_survive(hook, alice):
    text = "a<b & \"c\" 'd' é 🙂\nline2"
    alice.send_message("echo@bot.localhost", text)
    (req,) = hook.wait_for_requests(1)
    assert req.json["body"] == text
    el = parse_stanza(req.json["stanza"])
    assert el.find("{jabber:client}body") is not None or el.find("body") is not None
    body_el = el.find("{jabber:client}body")
    if body_el is None:
        body_el = el.find("body")
    assert body_el.text == text


def test_to_host_and_full_jid(hook, alice):
    alice.send_message("bot.localhost", "to host")
    alice.send_message("echo@bot.localhost/res", "to full")
    reqs = hook.wait_for_requests(2)
    by_body = {r.json["body"]: r.json for r in reqs}
    assert by_body["to host"]["to"] == "bot.localhost"
    assert by_body["to full"]["to"] == "echo@bot.localhost/res"
    assert by_body["to full"]["from"] == alice.full_jid


def test_basic_auth_from_url_userinfo(prosody_factory, webhook, connect):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url("/hook", userinfo="user:pa55")}})
    alice = connect(prosody)
    alice.send_message("echo@bot.localhost", "auth?")
    (req,) = webhook.wait_for_requests(1)
    assert req.path == "/hook"
    assert req.header("authorization") == "Basic " + base64.b64encode(b"user:pa55").decode()
    assert req.json["body"] == "auth?"


def test_no_authorization_header_without_userinfo(hook, alice):
    alice.send_message("echo@bot.localhost", "anon")
    (req,) = hook.wait_for_requests(1)
    assert req.header("authorization") is None


def test_path_and_query_are_kept(prosody_factory, webhook, connect):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url("/a/b?token=x%20y&n=1")}})
    alice = connect(prosody)
    alice.send_message("echo@bot.localhost", "q")
    (req,) = webhook.wait_for_requests(1)
    assert req.path == "/a/b?token=x%20y&n=1"
