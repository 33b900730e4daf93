"""The bot's avatar, with no bot code (README: Avatar).

component_post_avatar names a PNG or JPEG file, checked at load: a vCard query (XEP-0054) to any
JID on the component is answered with FN (the identity's name) and PHOTO (the file's bytes), and
the bot's presence carries the file's SHA-1 (XEP-0153), or an empty <photo/> when none is set.
A file that is not an image stops the component from loading, naming the option; a reload
serves the file as it is then. When iqs are POSTed, the webhook answers vCards, and the presence
says nothing of an avatar.
"""

import base64
import hashlib
import struct
import zlib

import pytest

from conftest import BOT
from e2e_webhook import Reply
from test_options import error_lines
from test_rest import REST, start

BOT_JID = f"echo@{BOT}"
VCARD = "vcard-temp"
UPDATE = "vcard-temp:x:update"


def png(width, height, grey=0x80):
    """A valid PNG of width x height grey pixels, written here rather than committed."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\x00" + bytes([grey]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture
def image(tmp_path):
    """A 1x1 PNG on disk: (path, bytes)."""
    path, data = tmp_path / "avatar.png", png(1, 1)
    path.write_bytes(data)
    return str(path), data


def vcard(client, to):
    """The vCard `to` answers with, after proving no second answer follows: {field: element}."""
    since = client.mark()
    iid = client.send_iq_get(to, f"<vCard xmlns='{VCARD}'/>")
    answer = client.wait_for(lambda s: s.name == "iq" and s.id == iid, since=since, what="vCard answer")
    assert answer.type == "result" and answer.frm == to, answer.xml
    client.expect_quiet(since, ignore=lambda s: s is answer)
    card = answer.child("vCard", VCARD)
    assert card is not None, answer.xml
    return {c.tag.split("}")[1]: c for c in card}


def photo_of(card):
    """(TYPE, the decoded BINVAL) of a vCard's PHOTO."""
    fields = {c.tag.split("}")[1]: c.text for c in card["PHOTO"]}
    assert set(fields) == {"TYPE", "BINVAL"}, fields
    return fields["TYPE"], base64.b64decode(fields["BINVAL"], validate=True)


def probed_presence(client, to=BOT_JID):
    """The bot's available presence in answer to a probe."""
    since = client.mark()
    client.send_presence(to, "probe")
    p = client.wait_for(lambda s: s.name == "presence" and s.frm == f"{to}/default", since=since,
                        what="available presence")
    assert p.type is None, p.xml
    return p


def photo_hash(presence):
    """The XEP-0153 photo of a presence: None without the element, "" for an empty <photo/>."""
    update = presence.child("x", UPDATE)
    if update is None:
        return None
    (photo,) = list(update)
    assert photo.tag == f"{{{UPDATE}}}photo", presence.xml
    return photo.text or ""


def test_the_vcard_carries_the_name_and_the_file(prosody_factory, make_webhook, connect, image):
    path, data = image
    hook = make_webhook()
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_name": "Echo Bot",
                                     "component_post_avatar": path}})
    alice = connect(prosody)
    for to in (BOT_JID, BOT):
        card = vcard(alice, to)
        assert set(card) == {"FN", "PHOTO"}
        assert card["FN"].text == "Echo Bot"
        assert photo_of(card) == ("image/png", data)
    assert hook.requests == [], "the module answered, not the webhook"
    assert f"SHA-1 {hashlib.sha1(data).hexdigest()}" in prosody.log_text()


def test_the_presence_carries_the_files_hash(prosody_factory, make_webhook, connect, image):
    path, data = image
    prosody = prosody_factory({BOT: {"component_post_url": make_webhook().url(), "component_post_avatar": path}})
    alice = connect(prosody)
    assert photo_hash(probed_presence(alice)) == hashlib.sha1(data).hexdigest()
    since = alice.mark()
    alice.send_presence(BOT_JID, "subscribe")
    p = alice.wait_for(lambda s: s.name == "presence" and s.frm == f"{BOT_JID}/default", since=since,
                       what="available presence after subscribing")
    assert photo_hash(p) == hashlib.sha1(data).hexdigest()


def test_without_an_avatar_the_vcard_has_the_name_and_the_presence_says_none(prosody_factory, make_webhook,
                                                                            connect):
    prosody = prosody_factory({BOT: {"component_post_url": make_webhook().url()}})
    alice = connect(prosody)
    card = vcard(alice, BOT_JID)
    assert set(card) == {"FN"} and card["FN"].text == "echo"
    assert vcard(alice, BOT)["FN"].text == BOT
    assert photo_hash(probed_presence(alice)) == ""


def test_a_reload_serves_the_file_as_it_is_then_and_tells_who_has_the_old_hash(prosody_factory, make_webhook,
                                                                               connect, image):
    path, old = image
    prosody = prosody_factory({BOT: {"component_post_url": make_webhook().url(), "component_post_avatar": path}})
    alice, bob = connect(prosody), connect(prosody, "bob")
    assert photo_of(vcard(alice, BOT_JID))[1] == old
    assert photo_hash(probed_presence(alice)) == hashlib.sha1(old).hexdigest()
    # The same file: nobody is told anything.
    since = alice.mark()
    prosody.reload_module("component_http", BOT)
    alice.expect_quiet(since)
    # A new file: alice, who has the bot's presence, gets it with the new hash at once; bob, who
    # never asked for it, gets nothing.
    new = png(2, 2, grey=0x20)
    with open(path, "wb") as f:
        f.write(new)
    since, bob_since = alice.mark(), bob.mark()
    prosody.reload_module("component_http", BOT)
    told = alice.wait_for(lambda s: s.name == "presence", since=since, what="the bot's new presence")
    assert (told.frm, told.type, photo_hash(told)) == (f"{BOT_JID}/default", None, hashlib.sha1(new).hexdigest())
    alice.expect_quiet(since, ignore=lambda s: s is told)
    bob.expect_quiet(bob_since)
    assert photo_of(vcard(alice, BOT_JID)) == ("image/png", new)


@pytest.mark.parametrize("content, reason", [
    (b"just some text\n", "it is neither a PNG nor a JPEG"),
    (png(1, 1)[:40], "it is not a valid PNG"),
    (png(1, 1) + b"\x00" * 65536, "more than the 65536 allowed"),
    (None, "cannot open"),
], ids=["text", "truncated", "too large", "missing"])
def test_a_file_that_cannot_be_served_stops_the_component_naming_the_option(prosody_factory, make_webhook,
                                                                             connect, tmp_path, content, reason):
    path = tmp_path / "avatar.png"
    if content is not None:
        path.write_bytes(content)
    hook = make_webhook()
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_avatar": str(path)}})
    assert prosody.alive()
    refusals = [line for line in error_lines(prosody) if "component_post_avatar" in line]
    assert refusals and reason in refusals[0], "\n".join(error_lines(prosody))
    assert str(path) in refusals[0]
    # Not loaded: nobody serves the component, and Prosody bounces what is sent to it.
    alice = connect(prosody)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "anyone?")
    error = alice.wait_for(lambda s: s.id == mid, since=since, what="the bounce")
    assert error.type == "error", error.xml
    assert hook.requests == []


def test_with_iq_posted_the_webhook_answers_the_vcard(prosody_factory, make_webhook, connect, image):
    path, _ = image
    hook = make_webhook()
    hook.respond_json({"stanza": f"<iq><vCard xmlns='{VCARD}'><FN>webhook</FN></vCard></iq>"})
    prosody = prosody_factory({BOT: {"component_post_url": hook.url(), "component_post_avatar": path,
                                     "component_post_stanzas": ["message", "iq"]}})
    alice = connect(prosody)
    card = vcard(alice, BOT_JID)
    assert set(card) == {"FN"} and card["FN"].text == "webhook"
    (query,) = hook.requests
    assert query.json["kind"] == "iq" and VCARD in query.json["stanza"]
    # The presence says nothing of an avatar: the webhook's vCard is the one clients see.
    assert photo_hash(probed_presence(alice)) is None
    assert any("The avatar is not served" in line for line in prosody.log_text().splitlines())


def test_mod_rest_serves_rest_avatar(prosody_factory, make_webhook, connect, image):
    path, data = image
    hook = make_webhook()
    hook.handler = lambda req: Reply(status=204)
    prosody, _ = start(prosody_factory, {REST: {"rest_callback_url": hook.url(), "rest_stanzas": ["message"],
                                                "rest_name": "Rest Bot", "rest_avatar": path}})
    alice = connect(prosody)
    since = alice.mark()
    iid = alice.send_iq_get(f"bot@{REST}", f"<vCard xmlns='{VCARD}'/>")
    answer = alice.wait_for(lambda s: s.name == "iq" and s.id == iid, since=since, what="vCard answer")
    assert answer.type == "result", answer.xml
    card = {c.tag.split("}")[1]: c for c in answer.child("vCard", VCARD)}
    assert card["FN"].text == "Rest Bot"
    assert photo_of(card) == ("image/png", data)
    assert hook.requests == []
