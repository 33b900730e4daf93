"""Receipts and identity, with no bot code (README, Messages: receipts; Identity).

A message that asks for a receipt (XEP-0184) gets exactly one <received/> from the JID written
to once the webhook accepted it, before the reply; an error gets none. disco#info (XEP-0030) to
a JID on the component is answered by the module with a bot identity, named by
component_post_name or the JID's local part, unless iqs are POSTed: then the webhook gets it.
"""

from conftest import BOT
from e2e_webhook import Reply
from test_rest import REST, start

BOT_JID = f"echo@{BOT}"
RECEIPTS = "urn:xmpp:receipts"
REQUEST = f"<request xmlns='{RECEIPTS}'/>"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
FEATURES = {DISCO_INFO, RECEIPTS, "http://jabber.org/protocol/chatstates", "vcard-temp"}


def receipt_of(s):
    """The id a received message acknowledges, or None."""
    received = s.child("received", RECEIPTS)
    return None if received is None else received.get("id")


def test_a_receipt_comes_once_from_the_jid_written_to_then_the_reply(hook, alice):
    hook.handler = lambda req: Reply.with_json({"body": "got it"})
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "hello", extra=REQUEST)
    receipt, reply = alice.wait_for_count(lambda s: s.name == "message", 2, since=since, what="receipt and reply")
    assert receipt_of(receipt) == mid, receipt.xml
    assert (receipt.frm, receipt.to, receipt.body) == (BOT_JID, alice.full_jid, None)
    assert receipt.id and receipt.id != mid
    assert reply.body == "got it" and receipt_of(reply) is None
    alice.expect_quiet(since, ignore=lambda s: s in (receipt, reply))
    # The webhook got the message once, request included, and nothing of the receipt.
    (req,) = hook.requests
    assert req.json["body"] == "hello" and REQUEST in req.json["stanza"]


def test_a_receipt_comes_alone_when_the_webhook_has_nothing_to_say(hook, alice):
    hook.respond(204)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "just listen", extra=REQUEST)
    receipt = alice.wait_for(lambda s: s.name == "message", since=since, what="receipt")
    assert receipt_of(receipt) == mid and receipt.frm == BOT_JID
    alice.expect_quiet(since, ignore=lambda s: s is receipt)


def test_an_error_gets_no_receipt(hook, alice):
    hook.respond(500)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "break", extra=REQUEST)
    error = alice.wait_for(lambda s: s.name == "message", since=since, what="the error")
    assert error.id == mid and error.error == ("cancel", "internal-server-error", None), error.xml
    assert receipt_of(error) is None
    alice.expect_quiet(since, ignore=lambda s: s is error)


def test_a_message_without_a_request_gets_no_receipt(hook, alice):
    hook.respond(204)
    since = alice.mark()
    alice.send_message(BOT_JID, "no receipt wanted")
    hook.wait_for_requests(1)
    alice.expect_quiet(since)


def disco(client, to):
    """disco#info to `to`: (identities, features) of the one answer, after proving that no
    second answer follows."""
    since = client.mark()
    iid = client.send_iq_get(to, f"<query xmlns='{DISCO_INFO}'/>")
    answer = client.wait_for(lambda s: s.name == "iq" and s.id == iid, since=since, what="disco#info answer")
    assert answer.type == "result" and answer.frm == to, answer.xml
    query = answer.child("query", DISCO_INFO)
    identities = [dict(c.attrib) for c in query if c.tag == f"{{{DISCO_INFO}}}identity"]
    features = {c.get("var") for c in query if c.tag == f"{{{DISCO_INFO}}}feature"}
    return since, answer, identities, features


def test_disco_info_names_the_bot_by_its_local_part_by_default(hook, alice):
    since, answer, identities, features = disco(alice, BOT_JID)
    assert identities == [{"category": "client", "type": "bot", "name": "echo"}]
    assert features == FEATURES
    alice.expect_quiet(since, ignore=lambda s: s is answer)
    assert hook.requests == [], "the module answered it, not the webhook"
    # The host itself has no local part: it is named by the host.
    _, _, identities, _ = disco(alice, BOT)
    assert identities == [{"category": "client", "type": "bot", "name": BOT}]


def test_disco_info_names_the_bot_by_the_option(prosody_factory, make_webhook, connect):
    hook = make_webhook()
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_name": "Echo Bot"}})
    alice = connect(prosody)
    for to in (BOT_JID, BOT):
        since, answer, identities, features = disco(alice, to)
        assert identities == [{"category": "client", "type": "bot", "name": "Echo Bot"}]
        assert features == FEATURES
        alice.expect_quiet(since, ignore=lambda s: s is answer)
    assert hook.requests == []


def test_with_iq_posted_the_webhook_answers_disco(prosody_factory, make_webhook, connect):
    hook = make_webhook()
    hook.respond_json({"stanza": f"<iq><query xmlns='{DISCO_INFO}'><identity category='client' type='pc' "
                                 f"name='webhook'/></query></iq>"})
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_name": "Echo Bot",
                                     "component_post_stanzas": ["message", "iq"]}})
    alice = connect(prosody)
    since, answer, identities, _ = disco(alice, BOT_JID)
    assert identities == [{"category": "client", "type": "pc", "name": "webhook"}]
    (req,) = hook.requests
    assert req.json["kind"] == "iq" and DISCO_INFO in req.json["stanza"]
    alice.expect_quiet(since, ignore=lambda s: s is answer)


def test_mod_rest_answers_disco_with_rest_name_and_sends_receipts(prosody_factory, make_webhook, connect):
    hook = make_webhook()
    hook.handler = lambda req: Reply(status=204)
    prosody, _ = start(prosody_factory, {REST: {"rest_callback_url": hook.url(), "rest_stanzas": ["message"],
                                                "rest_name": "Rest Bot"}})
    alice = connect(prosody)
    _, _, identities, features = disco(alice, f"bot@{REST}")
    assert identities == [{"category": "client", "type": "bot", "name": "Rest Bot"}]
    assert features == FEATURES
    since = alice.mark()
    mid = alice.send_message(f"bot@{REST}", "hello", extra=REQUEST)
    receipt = alice.wait_for(lambda s: s.name == "message", since=since, what="receipt")
    assert receipt_of(receipt) == mid and receipt.frm == f"bot@{REST}"
    # The callback got the message only: the disco query was answered by the module.
    (req,) = hook.wait_for_requests(1)
    assert req.raw_body.decode().startswith("<message")
