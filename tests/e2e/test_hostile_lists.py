"""Every list of the JSON mapping is bounded (README: "A message … may also carry"): a reply or a
push with a list past its bound is refused naming the field and the bound, before Prosody's main
thread builds, routes or echoes a stanza of it; a list at its bound is sent whole.

Found by the third hostile review: a 1 MB push of 200,000 reactions became a 4.4 MB stanza,
stalled the main thread for 1.7 s, and its `202` echoed it all back; replies took the same path.
"""

import json

import pytest

from conftest import BOT
from e2e_webhook import Reply
from test_rest import TOKEN, post, start

BOT_JID = f"echo@{BOT}"
REACTIONS = "urn:xmpp:reactions:0"
THUMBS_UP = "\N{THUMBS UP SIGN}"
MAX_REACTIONS = 100  # README: "at most 100 reactions"
# One past the bound, and the review's megabyte of them (still within max_reply_size and
# max_push_size: the bound must hold below the size limits, not only beyond them).
PAST = [MAX_REACTIONS + 1, 200_000]


def reaction_fields(count, to_id="m1"):
    # Past the bound, the shortest reaction, so that 200,000 of them fit in a megabyte.
    reaction = THUMBS_UP if count <= MAX_REACTIONS else "x"
    return {"reactions": {"id": to_id, "reactions": [reaction] * count}}


def bound_refusal(count):
    return f"'reactions.reactions' holds {count} reactions, more than the {MAX_REACTIONS} a message may carry"


def test_a_reply_with_reactions_at_the_bound_is_sent_whole(hook, alice):
    hook.handler = lambda req: Reply.with_json(reaction_fields(MAX_REACTIONS, req.json["id"]))
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "react a lot")
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    reactions = got.child("reactions", REACTIONS)
    assert reactions is not None and reactions.get("id") == mid, got.xml
    assert [r.text for r in reactions] == [THUMBS_UP] * MAX_REACTIONS


@pytest.mark.parametrize("count", PAST)
def test_a_reply_with_reactions_past_the_bound_is_refused_naming_field_and_bound(hook, alice, shared_prosody,
                                                                                  count):
    hook.handler = lambda req: Reply.with_json({"body": "never sent", **reaction_fields(count, req.json["id"])})
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "react too much")
    got = alice.wait_for(lambda s: s.name == "message", since=since, timeout=30)
    assert got.id == mid and got.type == "error", got.xml[:300]
    assert got.error == ("cancel", "internal-server-error", "The webhook sent an invalid reply")
    alice.expect_quiet(since, ignore=lambda s: s is got)
    assert [line for line in shared_prosody.log_text().splitlines() if mid in line and bound_refusal(count) in line]


@pytest.fixture
def pushing(prosody_factory, connect, webhook):
    """(push(fields) -> (status, body), alice): component_http's push endpoint as its client."""
    prosody, port = start(prosody_factory, {BOT: {"component_post_url": webhook.url(),
                                                  "component_post_push_credentials": TOKEN}})
    alice = connect(prosody)

    def push(fields):
        body = json.dumps({"to": "alice@localhost", "from": BOT_JID, **fields})
        status, _, text = post(port, body, content_type="application/json", host=BOT, path="/component_http")
        return status, text

    return push, alice


def test_a_push_with_reactions_past_the_bound_gets_400_and_nothing_is_sent(pushing):
    push, alice = pushing
    since = alice.mark()
    for count in PAST:
        status, text = push(reaction_fields(count))
        assert (status, text.strip()) == (400, bound_refusal(count)), text[:300]
    # At the bound: sent whole, and the 202 is the stanza as sent.
    status, text = push(reaction_fields(MAX_REACTIONS))
    assert status == 202, text[:300]
    assert text.count("<reaction>") == MAX_REACTIONS, text[:300]
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    assert len(list(got.child("reactions", REACTIONS))) == MAX_REACTIONS, got.xml[:300]
    alice.expect_quiet(since, ignore=lambda s: s is got)


# XML writes each of these as an entity of up to six bytes (`&apos;`), and a JSON 202 carries
# the text twice (in `stanza` and `body`): at most seven bytes for each byte of the push.
@pytest.mark.parametrize("char", ["&", "<", ">", "'", '"', "x"], ids=["amp", "lt", "gt", "apos", "quot", "plain"])
def test_the_202_of_the_largest_push_is_the_stanza_as_sent_within_seven_times_its_size(pushing, char):
    push, alice = pushing
    limit = 1024 * 1024  # component_post_max_push_size's default
    envelope = len(json.dumps({"to": "alice@localhost", "from": BOT_JID, "body": ""}))
    text = char * ((limit - envelope) // len(json.dumps(char)[1:-1]))
    since = alice.mark()
    status, answer = push({"body": text})
    assert status == 202, answer[:300]
    sent = json.loads(answer)
    assert sent["body"] == text and sent["kind"] == "message"
    assert len(answer.encode()) <= 7 * limit
    got = alice.wait_for(lambda s: s.name == "message", since=since)
    assert got.body == text
