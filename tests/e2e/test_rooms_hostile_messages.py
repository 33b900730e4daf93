"""Room messages as a hostile occupant or user writes them (README, "Bots in group chats"): a
message from a room beyond the parser's limits is dropped with a log line, never POSTed as an
ordinary message nor answered (an error to an occupant gets the bot kicked, status 333); a
`groupchat` message from anyone but a room is dropped unread, whatever it carries."""

import pytest

from conftest import BOT
from e2e_util import wait_until
from e2e_webhook import Reply

from test_rooms import BOT_OCCUPANT, NICK, ROOM, in_room, room_bot

# The parser's limits (src/xml.rs, README): 32 levels, 64 attributes on an element, 10,000
# elements. Each payload is one past one of them, in a message that mentions the bot.
DEPTH, ATTRIBUTES, ELEMENTS = 32, 64, 10_000
OVER_THE_LIMITS = {
    # The message is the first level, so 32 more make 33.
    "depth": "<x xmlns='urn:e2e'>" * DEPTH + "</x>" * DEPTH,
    "attributes": "<x xmlns='urn:e2e'" + "".join(f" a{i}='v'" for i in range(ATTRIBUTES + 1)) + "/>",
    "elements": "<x xmlns='urn:e2e'/>" * ELEMENTS,
}


def answer_only_the_sentinel(req):
    """The sentinel mention is answered; anything else gets a 500, whose error, were it sent,
    would go to the occupant and get the bot kicked."""
    if req.json.get("body") == "Helper, sentinel":
        return Reply.with_json({"body": "still here"})
    return Reply(status=500)


@pytest.mark.parametrize("limit", sorted(OVER_THE_LIMITS))
def test_a_room_message_over_a_parse_limit_is_dropped_and_the_bot_stays(prosody_factory, webhook, connect,
                                                                        limit):
    webhook.handler = answer_only_the_sentinel
    prosody = room_bot(prosody_factory, webhook.url(), component_post_groupchat="mentions")
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since_alice, since_bob = alice.mark(), bob.mark()
    hostile = alice.say(ROOM, "Helper, read this", extra=OVER_THE_LIMITS[limit])
    # bob saw it: the room passed it on to every occupant, the bot among them.
    bob.wait_said(ROOM, "alice", "Helper, read this", since=since_bob)
    dropped = f"dropped message from {ROOM}/alice to {BOT} (id {hostile}): from a room, but unreadable ("
    wait_until(lambda: dropped in prosody.log_text(), timeout=10, what="the drop line")
    # A later mention from the same occupant is POSTed (one sender's messages are handled in
    # order) and answered in the room: the bot is still in it.
    alice.say(ROOM, "Helper, sentinel")
    alice.wait_said(ROOM, NICK, "still here", since=since_alice)
    (request,) = webhook.wait_for_requests(1)
    assert {k: request.json.get(k) for k in ("body", "room", "nick", "mentioned")} == {
        "body": "Helper, sentinel", "room": ROOM, "nick": "alice", "mentioned": True}, request.json
    for client in (alice, bob):
        errors = [s.xml for s in client.received if s.type == "error"]
        assert not errors, errors
        left = [s.xml for s in client.received if s.name == "presence" and s.frm == BOT_OCCUPANT
                and s.type == "unavailable"]
        assert not left, left
    assert not [l for l in prosody.log_text().splitlines() if "\terror\t" in l or "traceback" in l.lower()]


@pytest.mark.parametrize("limit", sorted(OVER_THE_LIMITS))
def test_a_private_message_from_an_occupant_over_a_parse_limit_is_dropped(prosody_factory, webhook, connect,
                                                                          limit):
    webhook.handler = answer_only_the_sentinel
    prosody = room_bot(prosody_factory, webhook.url(), component_post_groupchat="mentions")
    (alice,) = in_room(prosody, connect, "alice")
    since = alice.mark()
    hostile = alice.send_message(BOT_OCCUPANT, "psst", extra=OVER_THE_LIMITS[limit])
    dropped = f"dropped message from {ROOM}/alice to {BOT} (id {hostile}): from a room, but unreadable ("
    wait_until(lambda: dropped in prosody.log_text(), timeout=10, what="the drop line")
    alice.say(ROOM, "Helper, sentinel")
    alice.wait_said(ROOM, NICK, "still here", since=since)
    assert [r.json.get("body") for r in webhook.requests] == ["Helper, sentinel"]
    errors = [s.xml for s in alice.received if s.type == "error"]
    assert not errors, errors



def quoting_reply(to, body_chars, ranges):
    """A XEP-0461 reply whose XEP-0428 fallback marks `ranges` one-code-point ranges over a body
    of `body_chars` code points, as raw XML from a client."""
    fallback = "".join(f"<body start='{2 * i}' end='{2 * i + 1}'/>" for i in range(ranges))
    extra = (f"<reply xmlns='urn:xmpp:reply:0' id='m0' to='{to}'/>"
             f"<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>{fallback}</fallback>")
    return "ab" * (body_chars // 2), extra


def test_a_groupchat_message_from_a_user_with_a_huge_quote_is_dropped_unread(prosody_factory, webhook,
                                                                             connect):
    """One outcome, documented: a `groupchat` message from a JID that is no room is not POSTed,
    not answered, and logged at debug; the same bytes as `chat` are POSTed, the fallback beyond
    its bound of 16 ranges not honoured (the body whole)."""
    webhook.handler = lambda req: Reply(status=204)
    prosody = room_bot(prosody_factory, webhook.url())
    alice = connect(prosody, "alice")
    body, extra = quoting_reply(BOT, 100_000, 5_000)
    stanza_bytes = len(body) + len(extra)
    assert stanza_bytes < 250 * 1024, "within Prosody's c2s stanza size limit"
    since = alice.mark()
    hostile = alice.send_message(f"echo@{BOT}", body, type_="groupchat", extra=extra)
    dropped = (f"not posting message from {alice.full_jid} to echo@{BOT} (id {hostile}): "
               "a room message from a room the bot is not in")
    wait_until(lambda: dropped in prosody.log_text(), timeout=10, what="the skip line")
    alice.expect_quiet(since)
    assert webhook.requests == []
    assert prosody.log_text().count(f"(id {hostile})") == 1, "one outcome, one line"
    # The same as a chat message: POSTed once, with its body whole.
    chat = alice.send_message(f"echo@{BOT}", body, type_="chat", extra=extra)
    (request,) = webhook.wait_for_requests(1)
    assert (request.json["id"], request.json["reply"]) == (chat, {"id": "m0", "to": BOT})
    whole = request.json["body"] == body
    assert whole, f"{len(request.json['body'])} of {len(body)} code points POSTed"
