"""mod_rest as operators run the current community module (README: Migrating from the current
community mod_rest): loaded on a VirtualHost, where the users' own traffic stays theirs and
clients send as the accounts they authenticate as (Basic with the account's password, Bearer
with a token Prosody issued); POST /rest/echo, which sends nothing; and the community module's
options (rest_callback_content_type = "json", rest_stanza_size_limit, rest_iq_timeout with the
Prosody-Rest-Timeout header)."""

import base64
import json
import re
import urllib.error
import urllib.request

import pytest

from e2e_prosody import PROSODYCTL
from e2e_util import free_port
from e2e_webhook import Reply

HOST = "localhost"
REST = "rest.localhost"
TOKEN = "Bearer dmVyeSBzZWNyZXQgdG9rZW4K"
XMPP_XML = "application/xmpp+xml"
BASE_MODULES = ["roster", "saslauth", "admin_shell", "ping"]


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def post(port, body, authorization=None, host=HOST, path="/rest", content_type=XMPP_XML, headers=None):
    """POSTs `body` with urllib: (status, headers, body)."""
    sent = {"Host": host, **(headers or {})}
    if content_type:
        sent["Content-Type"] = content_type
    if authorization:
        sent["Authorization"] = authorization
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode(), headers=sent,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def on_virtual_host(prosody_factory, options=None, components=None, component_modules=None):
    """A Prosody whose VirtualHost "localhost" loads mod_rest (modules_enabled, as the community
    module's README says), with `options` for it: (prosody, http_port)."""
    port = free_port()
    prosody = prosody_factory(components or {}, component_modules=component_modules, global_options={
        "http_ports": [port], "http_interfaces": ["127.0.0.1"],
        "modules_enabled": BASE_MODULES + ["rest"], **(options or {})})
    return prosody, port


def message_from(client, sender, body, since):
    return client.wait_for(lambda s: s.name == "message" and s.frm and s.frm.startswith(sender)
                           and s.body == body, since=since, what=f"{body!r} from {sender}")


def test_on_a_virtual_host_the_users_own_traffic_stays_theirs(prosody_factory, connect, webhook):
    """With a callback: logins (which wait for the roster) finish, chats and directed presence
    between two users arrive, and only a stanza to the host itself reaches the callback."""
    prosody, _ = on_virtual_host(prosody_factory, {"rest_callback_url": webhook.url()})
    alice = connect(prosody, "alice")  # waits for its roster: a swallowed roster query fails here
    bob = connect(prosody, "bob")
    since_a, since_b = alice.mark(), bob.mark()

    alice.send_message("bob@localhost", "hello bob")
    message_from(bob, "alice@localhost", "hello bob", since_b)
    bob.send_message(alice.full_jid, "hello alice")
    message_from(alice, "bob@localhost", "hello alice", since_a)
    roster_id = "roster-1"
    alice.send_raw(f"<iq type='get' id='{roster_id}'><query xmlns='jabber:iq:roster'/></iq>")
    alice.wait_for(lambda s: s.name == "iq" and s.id == roster_id and s.type == "result", since=since_a,
                   what="the roster")
    alice.send_presence(to="bob@localhost", extra="<status>here</status>")
    bob.wait_for(lambda s: s.name == "presence" and s.frm == alice.full_jid, since=since_b,
                 what="alice's directed presence")
    ping_id = alice.send_iq("localhost", "get", "<ping xmlns='urn:xmpp:ping'/>")
    alice.wait_for(lambda s: s.name == "iq" and s.id == ping_id and s.type == "result", since=since_a,
                   what="the server's own answer to a ping")
    assert webhook.requests == [], "nothing of the users' traffic was posted"

    # The module is live: a message to the host itself, which nothing else handles, is posted.
    alice.send_message("localhost", "to the host")
    (request,) = webhook.wait_for_requests(1)
    assert request.header("content-type") == XMPP_XML
    assert "to the host" in request.raw_body.decode() and "to='localhost'" in request.raw_body.decode()
    assert len(webhook.requests) == 1, [r.raw_body for r in webhook.requests]


def test_echo_builds_the_stanza_and_sends_nothing(prosody_factory, connect):
    port = free_port()
    prosody = prosody_factory({REST: {"rest_credentials": TOKEN}}, component_modules={REST: "rest"},
                              global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"],
                                              "modules_enabled": BASE_MODULES})
    alice = connect(prosody, "alice")
    since = alice.mark()
    status, headers, body = post(port, "<message type='chat' to='alice@localhost'><body>echoed</body></message>",
                                 TOKEN, host=REST, path="/rest/echo")
    assert status == 200 and headers["Content-Type"].startswith(XMPP_XML), (status, body)
    assert "<body>echoed</body>" in body and "from='rest.localhost'" in body, body
    status, _, body = post(port, '{"to": "alice@localhost", "body": "echoed too"}', TOKEN, host=REST,
                           path="/rest/echo", content_type="application/json")
    assert status == 200 and json.loads(body)["body"] == "echoed too", body
    # An iq is built too (its id given), and not sent: nothing waits for an answer.
    status, _, body = post(port, "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", TOKEN,
                           host=REST, path="/rest/echo")
    assert status == 200 and re.search(r"<iq[^>]* id=", body), body
    # The sentinel: a real push after the echoes arrives, and nothing before it did.
    status, _, _ = post(port, "<message type='chat' to='alice@localhost'><body>sentinel</body></message>", TOKEN,
                        host=REST)
    assert status == 202
    message_from(alice, REST, "sentinel", since)
    got = [s.body for s in alice.received[since:] if s.name == "message"]
    assert got == ["sentinel"], got
