"""mod_rest as operators run the current community module (README: Migrating from the current
community mod_rest): loaded on a VirtualHost, where the users' own traffic stays theirs and
clients send as the accounts they authenticate as (Basic with the account's password, Bearer
with a token Prosody issued); POST /rest/echo, which sends nothing; and the community module's
options (rest_callback_content_type = "json", rest_stanza_size_limit, rest_iq_timeout with the
Prosody-Rest-Timeout header)."""

import base64
import json
import re
import threading
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


def on_virtual_host(prosody_factory, options=None, components=None, component_modules=None, users=None):
    """A Prosody whose VirtualHost "localhost" loads mod_rest (modules_enabled, as the community
    module's README says), with `options` for it: (prosody, http_port)."""
    port = free_port()
    prosody = prosody_factory(components or {}, component_modules=component_modules, users=users, global_options={
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

    # The module is live: a message to the host itself, which nothing else handles, is posted,
    # and the callback's reply comes from the host.
    webhook.respond(200, "<message type='chat'><body>the host answers</body></message>",
                    headers={"Content-Type": XMPP_XML})
    alice.send_message("localhost", "to the host")
    (request,) = webhook.wait_for_requests(1)
    assert request.header("content-type") == XMPP_XML
    assert "to the host" in request.raw_body.decode() and "to='localhost'" in request.raw_body.decode()
    reply = alice.wait_for(lambda s: s.name == "message" and s.body == "the host answers", since=since_a)
    assert reply.frm == "localhost" and reply.type == "chat", reply
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
    # Path parameters with an XML stanza (which says its own kind, type and to) are refused, not
    # read as a plain POST /rest.
    status, _, body = post(port, "<message type='chat' to='alice@localhost'><body>misread</body></message>", TOKEN,
                           host=REST, path="/rest/message/chat/alice@localhost")
    assert status == 400 and "path parameters" in body, (status, body)
    # The sentinel: a real push after the echoes arrives, and nothing before it did.
    status, _, _ = post(port, "<message type='chat' to='alice@localhost'><body>sentinel</body></message>", TOKEN,
                        host=REST)
    assert status == 202
    message_from(alice, REST, "sentinel", since)
    got = [s.body for s in alice.received[since:] if s.name == "message"]
    assert got == ["sentinel"], got


def prosody_token(prosody, user):
    """A Bearer token for `user`@localhost issued by Prosody's own token API (mod_tokenauth,
    which mod_rest depends on), through the admin shell: create_grant and create_token on
    Prosody 13, create_jid_token on 0.12."""
    account = f"{user}@{HOST}"
    code = (f'>local m = prosody.hosts["{HOST}"].modules.tokenauth; local t; '
            f'if m.create_grant then t = m.create_token("{account}", m.create_grant("{account}", "{account}", 3600), '
            f'"prosody:registered", 3600) else t = m.create_jid_token("{account}", "{account}", "prosody:user", 3600) end; '
            f'print("TOKEN=" .. tostring(t))')
    r = prosody.shell(code)
    found = re.search(r"TOKEN=(\S+)", r.stdout + r.stderr)
    assert found and found.group(1) != "nil", (r.returncode, r.stdout, r.stderr)
    return found.group(1)


def test_an_account_sends_as_itself_with_its_password_or_a_token_prosody_issued(prosody_factory, connect):
    prosody, port = on_virtual_host(prosody_factory)
    bob = connect(prosody, "bob")
    since = bob.mark()
    chat = "<message type='chat' to='bob@localhost'><body>{}</body></message>"

    status, headers, body = post(port, chat.format("nobody"))
    assert status == 401, body
    assert 'Basic realm="localhost/rest"' in headers["WWW-Authenticate"], headers["WWW-Authenticate"]
    assert 'Bearer realm="localhost/rest"' in headers["WWW-Authenticate"]
    for wrong in [basic("alice", "wrong"), basic("nobody", "pw-alice"), basic("alice@elsewhere", "pw-alice"),
                  "Bearer not-a-token", "Digest alice"]:
        status, _, body = post(port, chat.format("wrong"), wrong)
        assert status == 403, (wrong, status, body)
    # Authenticated as alice, she may not speak for bob.
    status, _, body = post(port, "<message type='chat' to='alice@localhost' from='bob@localhost'><body>x</body></message>",
                           basic("alice", "pw-alice"))
    assert status == 403 and "alice@localhost" in body, body

    status, _, body = post(port, chat.format("with a password"), basic("alice", "pw-alice"))
    assert status == 202 and "from='alice@localhost'" in body, body
    message_from(bob, "alice@localhost", "with a password", since)
    status, _, body = post(port, chat.format("as user@host"), basic("alice@localhost", "pw-alice"))
    assert status == 202, body
    message_from(bob, "alice@localhost", "as user@host", since)

    # An iq to the host itself, as the account: the server's answer comes back.
    status, _, body = post(port, "<iq type='get' to='localhost' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
                           basic("alice", "pw-alice"))
    assert status == 200 and re.search(r"type=['\"]result['\"]", body), body

    token = prosody_token(prosody, "alice")
    status, _, body = post(port, chat.format("with a token"), "Bearer " + token)
    assert status == 202, body
    message_from(bob, "alice@localhost", "with a token", since)
    got = [s.body for s in bob.received[since:] if s.name == "message"]
    assert got == ["with a password", "as user@host", "with a token"], got


def test_on_a_component_basic_is_its_jid_and_component_secret(prosody_factory, connect):
    port = free_port()
    prosody = prosody_factory({REST: {"component_secret": "s3cret", "rest_credentials": TOKEN}},
                              component_modules={REST: "rest"},
                              global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"],
                                              "modules_enabled": BASE_MODULES})
    alice = connect(prosody, "alice")
    since = alice.mark()
    chat = "<message type='chat' to='alice@localhost'><body>{}</body></message>"
    assert post(port, chat.format("wrong"), basic(REST, "nope"), host=REST)[0] == 403
    assert post(port, chat.format("wrong"), basic("alice", "pw-alice"), host=REST)[0] == 403
    status, _, body = post(port, chat.format("secret"), basic(REST, "s3cret"), host=REST)
    assert status == 202 and "from='rest.localhost'" in body, body
    status, _, body = post(port, chat.format("credentials"), TOKEN, host=REST)
    assert status == 202, body
    message_from(alice, REST, "secret", since)
    message_from(alice, REST, "credentials", since)


def test_callback_content_type_json_is_the_shorthand_of_application_json(prosody_factory, connect, webhook):
    webhook.respond_json({"body": "pong"})
    prosody = prosody_factory({REST: {"rest_callback_url": webhook.url(), "rest_callback_content_type": "json"}},
                              component_modules={REST: "rest"})
    alice = connect(prosody, "alice")
    since = alice.mark()
    alice.send_message("bot@rest.localhost", "ping")
    message_from(alice, "bot@rest.localhost", "pong", since)
    (request,) = webhook.wait_for_requests(1)
    assert request.header("content-type") == "application/json"
    assert (request.json["kind"], request.json["body"]) == ("message", "ping"), request.json


def test_the_body_is_bounded_by_rest_stanza_size_limit(prosody_factory, connect):
    port = free_port()
    prosody = prosody_factory({REST: {"rest_credentials": TOKEN, "rest_stanza_size_limit": 200}},
                              component_modules={REST: "rest"},
                              global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"],
                                              "modules_enabled": BASE_MODULES})
    alice = connect(prosody, "alice")
    since = alice.mark()
    chat = "<message type='chat' to='alice@localhost'><body>{}</body></message>"
    status, _, body = post(port, chat.format("x" * 200), TOKEN, host=REST)
    assert status == 413 and "rest_stanza_size_limit" in body, (status, body)
    status, _, _ = post(port, chat.format("small"), TOKEN, host=REST)
    assert status == 202
    message_from(alice, REST, "small", since)
    got = [s.body for s in alice.received[since:] if s.name == "message"]
    assert got == ["small"], got


@pytest.mark.parametrize("options, header, bound_by", [
    ({"rest_iq_timeout": 1}, None, "rest_iq_timeout"),
    ({}, "1", "Prosody-Rest-Timeout"),
    ({"rest_iq_max_timeout": 1}, "600", "rest_iq_max_timeout"),
    ({"rest_iq_timeout": 600, "rest_iq_max_timeout": 1}, None, "rest_iq_max_timeout"),
])
def test_an_iqs_wait_is_bounded_by_the_option_or_header(prosody_factory, webhook, options, header, bound_by):
    """An iq to a bot whose webhook holds it unanswered: the push ends with 504 naming what bound
    the wait (the default, 120 s, and the header's absence are the first case's complement)."""
    held = threading.Event()
    webhook.handler = lambda req: (held.wait(60), Reply(status=204))[1]
    port = free_port()
    bot = "bot.localhost"
    try:
        prosody_factory(
            {REST: {"rest_credentials": TOKEN, **options},
             bot: {"component_post_url": webhook.url(), "component_post_stanzas": ["iq"], "component_post_timeout": 60}},
            component_modules={REST: "rest"},
            global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"], "modules_enabled": BASE_MODULES})
        status, _, body = post(port, f"<iq type='get' to='held@{bot}'><query xmlns='jabber:iq:version'/></iq>", TOKEN,
                               host=REST, headers={"Prosody-Rest-Timeout": header} if header else None)
        assert status == 504 and f"({bound_by})" in body, (status, body)
        assert len(webhook.requests) == 1, "the iq was sent, and is held"
    finally:
        held.set()


def test_a_timeout_header_that_is_not_seconds_is_refused(prosody_factory):
    port = free_port()
    prosody_factory({REST: {"rest_credentials": TOKEN}}, component_modules={REST: "rest"},
                    global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"],
                                    "modules_enabled": BASE_MODULES})
    for header in ["soon", "0", "-5"]:
        status, _, body = post(port, "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", TOKEN,
                               host=REST, headers={"Prosody-Rest-Timeout": header})
        assert status == 400 and "Prosody-Rest-Timeout" in body, (header, status, body)


def test_anonymous_rest_sends_without_credentials_as_an_account_of_its_own(prosody_factory):
    """anonymous_rest on a VirtualHost whose authentication is "anonymous": no credentials, no
    401, and each request is sent as an account made up for it (as an anonymous login gets)."""
    # No accounts: an anonymous host registers none.
    prosody, port = on_virtual_host(prosody_factory, {"authentication": "anonymous", "anonymous_rest": True},
                                    users={})
    ping = "<iq type='get' to='localhost' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
    status, _, body = post(port, ping)
    assert status == 200 and "type='result'" in body, (status, body)
    senders = set()
    for _ in range(2):
        status, _, body = post(port, "<message type='chat' to='nobody@localhost'><body>hi</body></message>",
                               path="/rest/echo")
        assert status == 200, (status, body)
        sender = re.search(r"from='([^']+)'", body).group(1)
        assert sender.endswith("@localhost") and sender != "localhost", body
        senders.add(sender)
    assert len(senders) == 2, senders


def test_anonymous_rest_is_ignored_where_logins_need_a_password(prosody_factory):
    """The same option on a host with password logins is ignored, as the community module ignores
    it: the config loads, and a request without credentials gets 401."""
    prosody, port = on_virtual_host(prosody_factory, {"anonymous_rest": True})
    status, headers, body = post(port, "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert status == 401 and headers["WWW-Authenticate"], (status, body)
