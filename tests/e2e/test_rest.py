"""mod_rest, and component_http's push endpoint (README: mod_rest; Sending on the bot's own
initiative): stanzas in over HTTP with the statuses a client can act on, an iq's answer in the
response, and stanzas to the component POSTed to rest_callback_url as XML."""

import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import BOT, REPO_ROOT
from e2e_util import free_port
from e2e_webhook import Reply

REST = "rest.localhost"
TOKEN = "Bearer dmVyeSBzZWNyZXQgdG9rZW4K"
XMPP_XML = "application/xmpp+xml"


def start(prosody_factory, components, http_port=None, modules=None):
    """A Prosody with `components` (REST and the hosts `modules` names run mod_rest, any other
    host component_http) and HTTP on `http_port` (a free one if not given): (prosody, http_port)."""
    http_port = http_port or free_port()
    modules = {**({REST: "rest"} if REST in components else {}), **(modules or {})}
    prosody = prosody_factory(components, component_modules=modules, global_options={
        "http_ports": [http_port], "http_interfaces": ["127.0.0.1"],
        "modules_enabled": ["roster", "saslauth", "admin_shell", "ping"]})
    return prosody, http_port


def post(port, body, content_type=XMPP_XML, token=TOKEN, host=REST, path="/rest", accept=None):
    headers = {"Host": host}
    if accept:
        headers["Accept"] = accept
    if content_type:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = token
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


@pytest.fixture
def rest(prosody_factory, connect):
    prosody, port = start(prosody_factory, {REST: {"rest_credentials": TOKEN}})
    return prosody, port, connect(prosody)


def first_message(client, since):
    return client.wait_for(lambda s: s.name == "message", since=since, timeout=10)


def test_a_pushed_message_reaches_the_client(rest):
    _, port, alice = rest
    since = alice.mark()
    status, headers, body = post(port, "<message type='chat' to='alice@localhost'><body>Hello!</body></message>")
    assert status == 202 and headers["Content-Type"].startswith(XMPP_XML)
    assert "from='rest.localhost'" in body and "<body>Hello!</body>" in body
    msg = first_message(alice, since)
    assert (msg.frm, msg.body, msg.type) == (REST, "Hello!", "chat")


def test_an_iq_to_the_server_comes_back_in_the_response(rest):
    _, port, _ = rest
    status, headers, body = post(port, "<iq type='get' to='localhost' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert status == 200 and headers["Content-Type"].startswith(XMPP_XML)
    assert re.search(r"<iq[^>]*type=['\"]result['\"]", body) and "id='p1'" in body.replace('"', "'"), body


def test_an_iq_to_a_client_comes_back_with_its_answer(rest):
    _, port, alice = rest
    status, _, body = post(port, f"<iq type='get' to='{alice.full_jid}'><query xmlns='jabber:iq:version'/></iq>")
    assert status == 200
    # slixmpp answers an iq it has no handler for with feature-not-implemented: the client's
    # own answer, returned as it came.
    assert f"from='{alice.full_jid}'" in body.replace('"', "'") and "feature-not-implemented" in body, body


@pytest.mark.parametrize("token", [None, "Bearer wrong", TOKEN + "x", TOKEN.lower()])
def test_a_missing_or_wrong_token_is_refused_and_nothing_routed(rest, token):
    _, port, alice = rest
    since = alice.mark()
    status, headers, _ = post(port, "<message to='alice@localhost'><body>spam</body></message>", token=token)
    # Nothing sent is 401 with the schemes to use; credentials not accepted are 403.
    if token is None:
        assert status == 401 and 'Bearer realm="rest.localhost/rest"' in headers.get("WWW-Authenticate", "")
    else:
        assert status == 403
    # The next, valid push is the first thing alice gets.
    post(port, "<message to='alice@localhost'><body>marker</body></message>")
    assert first_message(alice, since).body == "marker"


@pytest.mark.parametrize("body,content_type,status", [
    ("<message to='alice@localhost' from='admin@localhost'><body>I am admin</body></message>", XMPP_XML, 403),
    ("<message to='alice@localhost' from='localhost'><body>I am the server</body></message>", XMPP_XML, 403),
    ("<message to='alice@localhost'><body>x</body>", XMPP_XML, 400),
    ("<message to='alice@localhost'/><message to='alice@localhost'/>", XMPP_XML, 400),
    ("<?xml version='1.0'?><message to='alice@localhost'/>", XMPP_XML, 400),
    ("<message xmlns='jabber:client' to='alice@localhost'/>", XMPP_XML, 400),
    ("<!DOCTYPE m [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
     "<message to='alice@localhost'><body>&b;</body></message>", XMPP_XML, 400),
    ("<message to='alice@localhost'><body>" + "x" * (2 * 1024 * 1024) + "</body></message>", XMPP_XML, 413),
    ("<message to='alice@localhost'><body>x</body></message>", "text/xml", 415),
], ids=["spoofed-user", "spoofed-server", "broken", "two-stanzas", "declaration", "xmlns", "entities",
        "oversized", "text-xml"])
def test_a_bad_push_gets_its_status_and_nothing_is_routed(rest, body, content_type, status):
    prosody, port, alice = rest
    since = alice.mark()
    got, _, text = post(port, body, content_type=content_type)
    assert got == status, text
    assert text.strip(), "the body says what was wrong"
    post(port, "<message to='alice@localhost'><body>marker</body></message>")
    assert first_message(alice, since).body == "marker"
    assert prosody.alive()


@pytest.mark.parametrize("answer,expected", [
    (Reply(status=200, body="<message type='chat'><body>Yes, this is bot</body></message>",
           headers={"Content-Type": XMPP_XML}), ("reply", "Yes, this is bot")),
    (Reply(status=202), None),
    (Reply(status=204), None),
    (Reply(status=200, body="A text answer", headers={"Content-Type": "text/plain"}), ("reply", "A text answer")),
    (Reply(status=404), ("error", ("cancel", "item-not-found", None))),
    (Reply(status=503), ("error", ("wait", "remote-server-timeout", "Service temporarily unavailable"))),
], ids=["200-xml", "202", "204", "200-text", "404", "503"])
def test_the_callback_gets_stanzas_as_xml_and_its_answer_decides(prosody_factory, connect, make_webhook, answer,
                                                                  expected):
    hook = make_webhook()
    hook.handler = lambda req: answer
    prosody, _ = start(prosody_factory, {REST: {"rest_credentials": TOKEN, "rest_callback_url": hook.url(),
                                                "rest_retry_window": 0}})
    alice = connect(prosody)
    since = alice.mark()
    mid = alice.send_message(f"bot@{REST}", "Hello")
    (req,) = hook.wait_for_requests(1)
    assert req.header("content-type") == XMPP_XML
    assert req.raw_body.decode().startswith("<message") and "<body>Hello</body>" in req.raw_body.decode()
    if expected is None:
        # Nothing comes back: a second message's request arrives, and still nothing came.
        alice.send_message(f"bot@{REST}", "again")
        hook.wait_for_requests(2)
        assert [s for s in alice.received[since:] if s.name == "message"] == []
        return
    got = alice.wait_for(lambda s: s.name == "message", since=since, timeout=10)
    if expected[0] == "reply":
        assert (got.frm, got.body) == (f"bot@{REST}", expected[1])
    else:
        assert got.id == mid and got.error == expected[1]


def test_component_http_push_takes_json_or_xml_and_answers_an_iq_in_the_request_shape(prosody_factory, connect,
                                                                                       webhook):
    prosody, port = start(prosody_factory, {BOT: {"component_post_url": webhook.url(),
                                                  "component_post_push_credentials": TOKEN}})
    alice = connect(prosody)
    since = alice.mark()
    status, headers, body = post(port, '{"to": "alice@localhost", "from": "echo@bot.localhost", "body": "reminder"}',
                                 content_type="application/json", host=BOT, path="/component_http")
    assert status == 202 and headers["Content-Type"].startswith("application/json"), body
    sent = json.loads(body)
    assert (sent["kind"], sent["from"], sent["to"], sent["body"]) == ("message", "echo@bot.localhost",
                                                                      "alice@localhost", "reminder")
    assert first_message(alice, since).body == "reminder"
    status, _, body = post(port, "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
                           host=BOT, path="/component_http")
    answer = json.loads(body)
    assert status == 200 and answer["kind"] == "iq" and answer["from"] == "localhost" and answer["to"] == BOT
    assert "type='result'" in answer["stanza"].replace('"', "'")
    assert post(port, '{"to": "alice@localhost", "from": "admin@localhost"}', content_type="application/json",
                host=BOT, path="/component_http")[0] == 403
    assert post(port, "<message to='alice@localhost'/>", token=None, host=BOT, path="/component_http")[0] == 401


def readme_curl_examples():
    """The curl commands of the README's mod_rest section, exactly as written."""
    with open(f"{REPO_ROOT}/README.md") as f:
        text = f.read()
    section = text[text.index("## mod_rest"):]
    section = section[:section.index("\n## ", 1)]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S) if block.strip().startswith("curl")]


def test_the_readmes_curl_examples_work_as_written(prosody_factory, connect):
    examples = readme_curl_examples()
    assert len(examples) == 3, examples
    prosody, _ = start(prosody_factory, {REST: {"rest_credentials": TOKEN}}, http_port=5280)
    alice = connect(prosody)
    since = alice.mark()
    sent = subprocess.run(["sh", "-c", examples[0]], capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    assert first_message(alice, since).body == "Hello!"
    ping = subprocess.run(["sh", "-c", examples[1]], capture_output=True, text=True, timeout=30)
    assert ping.returncode == 0 and "type='result'" in ping.stdout.replace('"', "'"), ping.stdout + ping.stderr
    since = alice.mark()
    in_json = subprocess.run(["sh", "-c", examples[2]], capture_output=True, text=True, timeout=30)
    assert in_json.returncode == 0 and json.loads(in_json.stdout)["kind"] == "message", in_json.stdout + in_json.stderr
    msg = first_message(alice, since)
    assert (msg.frm, msg.body) == (f"bot@{REST}", "Hello in JSON!")
