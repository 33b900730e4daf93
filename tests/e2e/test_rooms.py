"""Bots in group chats (README, "Bots in group chats"; issue 17), with Prosody's own mod_muc on
conference.localhost and real clients in the rooms."""

import pytest

from conftest import BOT

MUC = "conference.localhost"
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
