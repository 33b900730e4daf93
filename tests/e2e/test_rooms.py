"""Bots in group chats (README, "Bots in group chats"; issue 17), with Prosody's own mod_muc on
conference.localhost and real clients in the rooms."""

import pytest

from e2e_webhook import Reply

from conftest import BOT

MUC = "conference.localhost"
CHAT_STATES = "http://jabber.org/protocol/chatstates"
ROOM = f"dev@{MUC}"


def error_lines(prosody):
    return [l for l in prosody.log_text().splitlines() if "\terror\t" in l]


@pytest.mark.parametrize("module,prefix", [("component_http", "component_post_"), ("rest", "rest_")])
@pytest.mark.parametrize("option,value,says", [
    ("rooms", ["conference.localhost"], "has no room name"),
    ("rooms", [f"dev@{BOT}/x"], "is on this component"),
    ("rooms", 7, "must be a list of rooms"),
    ("nick", " ", "is not a valid nick"),
    ("groupchat", "some", 'it must be "all" or "mentions"'),
], ids=["no-room-name", "on-the-component", "not-a-list", "blank-nick", "bad-mode"])
def test_invalid_room_options_stop_the_component_naming_them(prosody_factory, webhook, module, prefix,
                                                             option, value, says):
    url_option = "component_post_url" if module == "component_http" else "rest_callback_url"
    prosody = prosody_factory({BOT: {url_option: webhook.url(), prefix + option: value}},
                              component_module=module, muc=MUC)
    assert prosody.alive()
    named = [l for l in error_lines(prosody) if prefix + option in l and says in l]
    assert named, f"no error naming {prefix}{option}:\n" + "\n".join(error_lines(prosody))


NICK = "Helper"
BOT_OCCUPANT = f"{ROOM}/{NICK}"


def room_bot(prosody_factory, url, **options):
    """Prosody with mod_muc and the bot configured into ROOM as NICK."""
    opts = {"component_post_url": url, "component_post_rooms": [BOT_OCCUPANT], **options}
    return prosody_factory({BOT: opts}, muc=MUC)


def room_messages(client, since, room=ROOM):
    """The groupchat messages with a body from `room` received after `since`, as (nick, body)."""
    return [(s.frm.split("/", 1)[1], s.body) for s in client.received[since:]
            if s.name == "message" and s.type == "groupchat" and s.body is not None
            and s.frm.startswith(room + "/")]


def test_joined_from_config_and_seen_by_occupants(prosody_factory, webhook, connect):
    prosody = room_bot(prosody_factory, webhook.url())
    alice = connect(prosody)
    occupants = alice.join_room(ROOM, "alice")
    assert BOT_OCCUPANT in [p.frm for p in occupants if p.type is None], [p.xml for p in occupants]
    assert "joined dev@conference.localhost as \"Helper\"" in prosody.log_text()


def test_room_messages_are_posted_with_the_room_fields(prosody_factory, webhook, connect):
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = connect(prosody, "alice"), connect(prosody, "bob")
    alice.join_room(ROOM, "alice")
    bob.join_room(ROOM, "bob")
    plain = alice.say(ROOM, "hello all")
    named = alice.say(ROOM, "helper: what time is it?")
    first, second = webhook.wait_for_requests(2)
    for request, id_, body, mentioned in [(first, plain, "hello all", False),
                                          (second, named, "helper: what time is it?", True)]:
        fields = {k: request.json.get(k) for k in ("kind", "type", "id", "room", "nick", "mentioned", "body", "from")}
        assert fields == {"kind": "message", "type": "groupchat", "id": id_, "room": ROOM, "nick": "alice",
                          "mentioned": mentioned, "body": body, "from": f"{ROOM}/alice"}, request.json


def in_room(prosody, connect, *users):
    """Clients of `users`, each joined to ROOM under its own name."""
    clients = []
    for user in users:
        client = connect(prosody, user)
        client.join_room(ROOM, user)
        clients.append(client)
    return clients


def test_a_reply_goes_to_the_room_and_the_bots_own_message_is_never_posted(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"body": f"you said: {req.json['body']}"})
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    alice.say(ROOM, "one")
    reply = bob.wait_said(ROOM, NICK, "you said: one", since=since)
    assert reply.to == bob.full_jid and reply.error is None
    # The room reflected the bot's message to the bot as well; a second message said after it
    # is POSTed next, and nothing of the bot's own came in between.
    alice.say(ROOM, "two")
    bob.wait_said(ROOM, NICK, "you said: two", since=since)
    assert [r.json["body"] for r in webhook.requests] == ["one", "two"]
    assert room_messages(bob, since) == [("alice", "one"), (NICK, "you said: one"),
                                         ("alice", "two"), (NICK, "you said: two")]


def test_a_reply_naming_its_own_addressing_is_honoured(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"to": f"{ROOM}/{req.json['nick']}", "type": "chat",
                                                   "body": "just between us"})
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since_alice, since_bob = alice.mark(), bob.mark()
    alice.say(ROOM, "psst")
    private = alice.wait_for(lambda s: s.name == "message" and s.body == "just between us", since=since_alice)
    assert (private.type, private.frm) == ("chat", BOT_OCCUPANT)
    # bob saw alice's message and nothing of the bot's answer: a sentinel of his proves it.
    webhook.handler = lambda req: Reply.with_json({"body": "sentinel answered"})
    bob.say(ROOM, "sentinel")
    bob.wait_said(ROOM, NICK, "sentinel answered", since=since_bob)
    assert room_messages(bob, since_bob) == [("alice", "psst"), ("bob", "sentinel"), (NICK, "sentinel answered")]
    assert not [s for s in bob.received[since_bob:] if s.name == "message" and s.type != "groupchat"]


def test_a_private_message_from_an_occupant_is_posted_and_answered_privately(prosody_factory, webhook, connect):
    webhook.handler = lambda req: Reply.with_json({"body": "privately yours"})
    prosody = room_bot(prosody_factory, webhook.url())
    (alice,) = in_room(prosody, connect, "alice")
    since = alice.mark()
    mid = alice.send_message(BOT_OCCUPANT, "hi, bot")
    answer = alice.wait_for(lambda s: s.name == "message" and s.body == "privately yours", since=since)
    assert (answer.type, answer.frm) == ("chat", BOT_OCCUPANT)
    (request,) = webhook.wait_for_requests(1)
    fields = {k: request.json.get(k) for k in ("type", "id", "room", "nick", "from")}
    assert fields == {"type": "chat", "id": mid, "room": ROOM, "nick": "alice", "from": f"{ROOM}/alice"}
    assert "mentioned" not in request.json


def test_mentions_mode_posts_only_what_names_the_bot(prosody_factory, webhook, connect):
    prosody = room_bot(prosody_factory, webhook.url(), component_post_groupchat="mentions")
    (alice,) = in_room(prosody, connect, "alice")
    alice.say(ROOM, "hello all")
    alice.say(ROOM, "Helperless talk")
    named = alice.say(ROOM, "so, Helper, what now?")
    # One sender's messages are posted in order: had the first two been posted, they would be first.
    (request,) = webhook.wait_for_requests(1)
    assert (request.json["id"], request.json["mentioned"]) == (named, True)
    alice.say(ROOM, "helper?")
    webhook.wait_for_requests(2)
    assert [r.json["body"] for r in webhook.requests] == ["so, Helper, what now?", "helper?"]


@pytest.mark.parametrize("answer", [Reply(status=500), Reply.with_json({"to": "@nowhere", "body": "x"})],
                         ids=["http-500", "bad-reply"])
def test_errors_never_go_into_the_room_or_to_the_occupant(prosody_factory, webhook, connect, answer):
    prosody = room_bot(prosody_factory, webhook.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since_alice, since_bob = alice.mark(), bob.mark()
    webhook.handler = lambda req: (Reply.with_json({"body": "fine again"}) if req.json["body"] == "sentinel"
                                   else answer)
    alice.say(ROOM, "break it")
    alice.send_message(BOT_OCCUPANT, "break it privately")
    webhook.wait_for_requests(2)
    bob.say(ROOM, "sentinel")
    bob.wait_said(ROOM, NICK, "fine again", since=since_bob)
    alice.wait_said(ROOM, NICK, "fine again", since=since_alice)
    for client in (alice, bob):
        errors = [s for s in client.received if s.type == "error"]
        assert not errors, [s.xml for s in errors]
    assert room_messages(bob, since_bob) == [("alice", "break it"), ("bob", "sentinel"), (NICK, "fine again")]
    # Still in the room (an error sent to the room would have had the bot kicked: status 333).
    assert BOT_OCCUPANT in [p.frm for p in connect(prosody, "alice", resource="late").join_room(ROOM, "late")]
    assert "errors never go to a room or its occupants" in prosody.log_text()


def test_the_php_echo_bot_answers_each_message_once(prosody_factory, php_echo, connect):
    prosody = room_bot(prosody_factory, php_echo.url())
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    for word in ("hello", "again"):
        alice.say(ROOM, word)
        bob.wait_said(ROOM, NICK, f"Did you say {word}?", since=since)
    # The sentinel: said after the answers, answered after anything the bot would still say.
    bob.say(ROOM, "sentinel")
    bob.wait_said(ROOM, NICK, "Did you say sentinel?", since=since)
    assert room_messages(bob, since) == [
        ("alice", "hello"), (NICK, "Did you say hello?"),
        ("alice", "again"), (NICK, "Did you say again?"),
        ("bob", "sentinel"), (NICK, "Did you say sentinel?"),
    ]


def test_composing_goes_to_the_room_only_for_a_mention(prosody_factory, webhook, connect):
    # A slow answer, well past the chat state delay.
    webhook.handler = lambda req: Reply.with_json({"body": f"re: {req.json['body']}"}, delay=1.0)
    prosody = room_bot(prosody_factory, webhook.url(), component_post_chat_state_delay=0.1)
    alice, bob = in_room(prosody, connect, "alice", "bob")
    since = bob.mark()
    alice.say(ROOM, "just chatting")
    bob.wait_said(ROOM, NICK, "re: just chatting", since=since)
    alice.say(ROOM, "Helper, think")
    bob.wait_said(ROOM, NICK, "re: Helper, think", since=since)
    states = [(s.body, [c.tag.split("}")[1] for c in s.el if c.tag.startswith("{" + CHAT_STATES + "}")])
              for s in bob.received[since:] if s.name == "message" and s.frm == BOT_OCCUPANT]
    assert states == [("re: just chatting", []), (None, ["composing"]), ("re: Helper, think", ["active"])], states
