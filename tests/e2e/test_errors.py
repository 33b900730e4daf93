"""HTTP failures become XMPP errors; errors are never answered."""

import pytest

from conftest import BOT
from e2e_webhook import Reply

BOT_JID = "echo@bot.localhost"
# The mapping is the subject here, not the holding and retrying of 502-504 (test_delivery).
BOT_OPTIONS = {"component_post_retry_window": 0}

# status -> (error type, condition, text or None)
MAPPING = {
    400: ("modify", "bad-request", None),
    401: ("auth", "not-authorized", None),
    402: ("auth", "forbidden", "Payment required"),
    403: ("auth", "forbidden", None),
    404: ("cancel", "item-not-found", None),
    410: ("cancel", "gone", None),
    500: ("cancel", "internal-server-error", None),
    501: ("cancel", "feature-not-implemented", None),
    502: ("cancel", "remote-server-timeout", "Bad gateway"),
    503: ("wait", "remote-server-timeout", "Service temporarily unavailable"),
    504: ("wait", "remote-server-timeout", "Gateway timeout"),
    418: ("cancel", "service-unavailable", None),
    409: ("cancel", "service-unavailable", None),
    599: ("cancel", "service-unavailable", None),
}


def error_for(mid):
    return lambda s: s.name == "message" and s.id == mid and s.type == "error"


@pytest.mark.parametrize("status", list(MAPPING), ids=[str(s) for s in MAPPING])
def test_status_maps_to_stanza_error(hook, alice, status):
    hook.handler = lambda req: Reply(status=status, body=f"webhook says {status}")
    since = alice.mark()
    mid = alice.send_message(BOT_JID, f"trigger {status}")
    err = alice.wait_for(error_for(mid), since=since, what=f"error reply for HTTP {status}")
    assert err.frm == BOT_JID
    assert err.to == alice.full_jid
    assert err.error == MAPPING[status], err.xml
    # exactly one answer, and no success reply besides it
    alice.expect_quiet(since, ignore=lambda s: s is err)


def test_redirect_is_not_followed(hook, alice):
    """302 is neither success nor followed: it maps like any other status."""
    def script(req):
        if req.path == "/hook":
            return Reply(status=302, headers={"Location": "/redirected"})
        return Reply.with_json({"body": "followed the redirect"})
    hook.handler = script
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "redirect me")
    err = alice.wait_for(error_for(mid), since=since)
    assert err.error == ("cancel", "service-unavailable", None)
    alice.expect_quiet(since, ignore=lambda s: s is err)
    assert [r.path for r in hook.requests] == ["/hook"]


def test_json_error_body_is_not_delivered_as_reply(hook, alice):
    hook.handler = lambda req: Reply.with_json({"body": "should not be sent"}, status=500)
    since = alice.mark()
    mid = alice.send_message(BOT_JID, "boom")
    err = alice.wait_for(error_for(mid), since=since)
    assert err.error[:2] == ("cancel", "internal-server-error")
    assert err.body != "should not be sent"
    alice.expect_quiet(since, ignore=lambda s: s is err)


def test_error_stanza_is_never_answered(hook, alice):
    hook.handler = lambda req: Reply(status=500, body="nope")
    since = alice.mark()
    mid = alice.send_message(
        BOT_JID, None, type_="error",
        extra="<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>")
    # The module may or may not forward it; either way nothing may come back.
    alice.expect_quiet(since, grace=1.5)
    assert not [s for s in alice.received[since:] if s.id == mid]
    # prove the 500 script was live: a normal message is answered with an error
    since2 = alice.mark()
    mid2 = alice.send_message(BOT_JID, "normal")
    err = alice.wait_for(error_for(mid2), since=since2)
    assert err.error[:2] == ("cancel", "internal-server-error")


def test_connection_refused(prosody_factory, connect, closed_port_url):
    prosody = prosody_factory({BOT: {"component_post_url": closed_port_url, **BOT_OPTIONS}})
    alice = connect(prosody)
    mid = alice.send_message(BOT_JID, "anyone there?")
    err = alice.wait_for(error_for(mid), what="connection failure error")
    assert err.frm == BOT_JID
    assert err.error == ("cancel", "remote-server-timeout", "Connection failure")
    # Exactly one answer: a second message's error is the next message alice gets.
    mid2 = alice.send_message(BOT_JID, "still there?")
    err2 = alice.wait_for(error_for(mid2), what="the second connection failure error")
    assert [s for s in alice.received if s.name == "message"] == [err, err2]
