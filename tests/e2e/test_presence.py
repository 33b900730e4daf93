"""Presence: answered by the component itself unless "presence" is forwarded."""

import pytest

from conftest import BOT

BOT_JID = "echo@bot.localhost"


def presence(frm, type_=None):
    return lambda s: s.name == "presence" and s.frm == frm and s.type == type_


# -- default: presence is not forwarded ---------------------------------------
# Each test gets its own Prosody: rosters persist, and a subscription left over
# from an earlier test would make Prosody probe the bot at every login.
@pytest.fixture
def hook(webhook):
    return webhook


@pytest.fixture
def alice(prosody_factory, webhook, connect):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    return connect(prosody)


def test_subscribe_is_accepted(hook, alice):
    since = alice.mark()
    alice.send_presence(BOT_JID, "subscribe")
    sub = alice.wait_for(presence(BOT_JID, "subscribed"), since=since, what="subscribed")
    avail = alice.wait_for(presence(BOT_JID + "/default"), since=since, what="available presence")
    # Subscription requests carry the bare JID (RFC 6121, stamped by the server): so do the answers.
    assert (sub.frm, sub.to, avail.to) == (BOT_JID, "alice@localhost", "alice@localhost")
    # Prosody turns the approval into a roster push: alice is now subscribed.
    push = alice.wait_for(lambda s: s.name == "iq" and s.type == "set" and "jabber:iq:roster" in s.xml
                          and "subscription=\"to\"" in s.xml.replace("'", '"'),
                          since=since, what="roster push with subscription=to")
    assert BOT_JID in push.xml
    alice.expect_quiet(since, ignore=lambda s: s.name in ("presence", "iq"))
    assert hook.requests == []


def test_probe_gets_available_presence(hook, alice):
    since = alice.mark()
    alice.send_presence(BOT_JID, "probe")
    p = alice.wait_for(presence(BOT_JID + "/default"), since=since, what="available presence")
    assert p.to.startswith("alice@localhost")
    alice.expect_quiet(since, ignore=lambda s: s is p)
    assert hook.requests == []


def test_unsubscribe_gets_unavailable(hook, alice):
    alice.send_presence(BOT_JID, "subscribe")
    alice.wait_for(presence(BOT_JID + "/default"), what="available presence")
    since = alice.mark()
    alice.send_presence(BOT_JID, "unsubscribe")
    p = alice.wait_for(presence(BOT_JID + "/default", "unavailable"), since=since,
                       what="unavailable presence")
    assert p.to.startswith("alice@localhost")
    assert hook.requests == []


def test_directed_presence_is_accepted_silently(hook, alice):
    since = alice.mark()
    alice.send_presence(BOT_JID)                 # directed available
    alice.send_presence(BOT_JID, "unavailable")  # directed unavailable
    alice.send_presence(BOT_JID, "subscribed")
    alice.expect_quiet(since, ignore=lambda s: s.name == "iq")
    assert hook.requests == []


# -- presence forwarded -------------------------------------------------------
@pytest.fixture
def forwarding(prosody_factory, webhook, connect):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url(),
                                     "component_post_stanzas": ["message", "presence"]}})
    return webhook, connect(prosody)


def test_forwarded_presence_is_posted_not_answered(forwarding):
    webhook, alice = forwarding
    webhook.respond(204)
    since = alice.mark()
    pid = alice.send_presence(BOT_JID, "subscribe")
    (req,) = webhook.wait_for_requests(1)
    data = req.json
    assert data["kind"] == "presence"
    assert data["to"] == BOT_JID
    assert data["from"].startswith("alice@localhost")
    assert "body" not in data
    assert data["stanza"].startswith("<presence")
    assert "type='subscribe'" in data["stanza"]
    assert pid in data["stanza"]
    alice.expect_quiet(since, ignore=lambda s: s.name == "iq")  # roster pushes are Prosody's
    assert not [s for s in alice.received[since:] if s.name == "presence"]


def test_forwarded_probe_is_posted(forwarding):
    webhook, alice = forwarding
    webhook.respond(204)
    since = alice.mark()
    alice.send_presence(BOT_JID, "probe")
    (req,) = webhook.wait_for_requests(1)
    assert req.json["kind"] == "presence"
    assert "type='probe'" in req.json["stanza"]
    alice.expect_quiet(since)


def test_forwarded_presence_can_be_answered_by_webhook(forwarding):
    webhook, alice = forwarding
    webhook.respond_json({"stanza": "<presence type='subscribed'/>"})
    since = alice.mark()
    alice.send_presence(BOT_JID, "subscribe")
    webhook.wait_for_requests(1)
    alice.wait_for(presence(BOT_JID, "subscribed"), since=since, what="webhook's subscribed")
