"""How a 2xx webhook answer turns into (or does not turn into) a reply stanza."""

import pytest

from e2e_webhook import Reply

BOT_JID = "echo@bot.localhost"


def message_from_bot(s):
    return s.name == "message" and s.frm == BOT_JID


def ask(alice, hook, reply, body="question"):
    """Script `reply`, send one message, return (message id, mark)."""
    hook.handler = lambda req: reply
    since = alice.mark()
    mid = alice.send_message(BOT_JID, body)
    hook.wait_for_requests(1)
    return mid, since


def test_json_with_charset_parameter_replies(hook, alice):
    _, since = ask(alice, hook, Reply.with_json({"body": "with charset"},
                                                headers={"Content-Type": "application/json; charset=utf-8"}))
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.body == "with charset"
    assert reply.type == "chat"
    assert reply.to == alice.full_jid


def test_number_body_becomes_text(hook, alice):
    _, since = ask(alice, hook, Reply.with_json({"body": 42}))
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.body == "42"


def test_null_body_gives_message_without_body(hook, alice):
    _, since = ask(alice, hook, Reply.with_json({"body": None}))
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.child("body") is None
    assert reply.type == "chat"
    assert reply.to == alice.full_jid


def test_type_normal(hook, alice):
    _, since = ask(alice, hook, Reply.with_json({"type": "normal", "body": "x"}))
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.type == "normal"
    assert reply.body == "x"


def test_default_type_is_chat_even_for_normal_message(hook, alice):
    hook.handler = lambda req: Reply.with_json({"body": "y"})
    since = alice.mark()
    alice.send_message(BOT_JID, "plain", type_=None)
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.type == "chat"
    assert reply.body == "y"


def test_explicit_to_and_from_are_kept(hook, alice, bob):
    since_a, since_b = alice.mark(), bob.mark()
    hook.handler = lambda req: Reply.with_json(
        {"to": "bob@localhost", "from": "other@bot.localhost", "body": "relayed"})
    alice.send_message(BOT_JID, "relay this")
    got = bob.wait_for(lambda s: s.name == "message", since=since_b)
    assert got.frm == "other@bot.localhost"
    assert got.body == "relayed"
    assert got.type == "chat"
    alice.expect_quiet(since_a)


def test_kind_presence(hook, alice):
    _, since = ask(alice, hook, Reply.with_json({"kind": "presence"}))
    pres = alice.wait_for(lambda s: s.name == "presence" and s.frm == BOT_JID, since=since)
    assert pres.type is None  # available
    assert pres.to == alice.full_jid


def test_stanza_reply_gets_addresses_swapped_in(hook, alice):
    _, since = ask(alice, hook, Reply.with_json(
        {"stanza": "<message type='chat'><body>raw</body></message>"}))
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.body == "raw"
    assert reply.type == "chat"
    assert reply.to == alice.full_jid


def test_stanza_reply_keeps_its_own_to(hook, alice, bob):
    since_a, since_b = alice.mark(), bob.mark()
    hook.handler = lambda req: Reply.with_json(
        {"stanza": "<message to='bob@localhost' type='chat'><body>for bob</body></message>"})
    alice.send_message(BOT_JID, "tell bob")
    got = bob.wait_for(lambda s: s.name == "message", since=since_b)
    assert got.body == "for bob"
    assert got.frm == BOT_JID
    alice.expect_quiet(since_a)


def test_stanza_reply_with_payload_is_delivered_intact(hook, alice):
    _, since = ask(alice, hook, Reply.with_json({"stanza":
        "<message type='headline'><subject>s</subject><body>b &amp; c</body>"
        "<x xmlns='urn:example:e2e' a='1'><y>z</y></x></message>"}))
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.type == "headline"
    assert reply.body == "b & c"
    x = reply.child("x", "urn:example:e2e")
    assert x is not None and x.get("a") == "1"
    assert [c.text for c in x] == ["z"]


@pytest.mark.parametrize("reply", [
    Reply(status=200, body='{"body": "not json typed"}', headers={"Content-Type": "text/plain"}),
    Reply(status=200, body='{"body": "no content type"}'),
    Reply(status=204),
    Reply.with_json({"body": "created"}, status=201),
    Reply.with_json({"body": "accepted"}, status=202),
], ids=["200-text-plain", "200-no-content-type", "204", "201-json", "202-json"])
def test_no_reply(hook, alice, reply):
    _, since = ask(alice, hook, reply)
    alice.expect_quiet(since)


@pytest.mark.parametrize("value,text", [(True, "true"), ([1, "a"], '[1,"a"]'), ({"k": 1}, '{"k":1}'),
                                        ("", "")],
                         ids=["bool", "array", "object", "empty"])
def test_non_string_body_is_sent_as_json_text(hook, alice, value, text):
    _, since = ask(alice, hook, Reply.with_json({"body": value}))
    reply = alice.wait_for(message_from_bot, since=since)
    assert reply.body == text


@pytest.mark.parametrize("reply", [
    Reply(status=200, body="{not json", headers={"Content-Type": "application/json"}),
    Reply.with_json(["an", "array"]),
    Reply.with_json({"stanza": "<message><body>unclosed</message>"}),
    Reply.with_json({"stanza": "<!DOCTYPE m [<!ENTITY e 'x'>]><message><body>&e;</body></message>"}),
    Reply.with_json({"stanza": "<foo/>"}),
    Reply.with_json({"kind": "bogus", "body": "x"}),
    Reply.with_json({"type": 5, "body": "x"}),
], ids=["bad-json", "array", "bad-xml", "dtd", "not-a-stanza", "unknown-kind", "type-not-string"])
def test_invalid_reply_gives_internal_server_error(hook, alice, reply):
    mid, since = ask(alice, hook, reply)
    err = alice.wait_for(lambda s: s.id == mid and s.type == "error", since=since)
    assert err.error[:2] == ("cancel", "internal-server-error"), err.xml
    alice.expect_quiet(since, ignore=lambda s: s is err)
