"""mod_rest's requests in every form the current community module reads (README: Migrating from
the current community mod_rest): path parameters with a text, form or JSON body, form and text
bodies on POST /rest, the GET queries (/rest/ping/..., /rest/version/..., /rest/disco/...,
/rest/items/..., /rest/archive/...), an empty <to> meaning the account itself, answers in the
format Accept asks (XML, JSON or a form), and an archive query answered with its results
collected before the final iq. On a VirtualHost, sending as an account, with a real XMPP client
on the other end."""

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

from e2e_util import free_port

HOST = "localhost"
ALICE = "Basic " + base64.b64encode(b"alice:pw-alice").decode()
BOB = "Basic " + base64.b64encode(b"bob:pw-bob").decode()
MODULES = ["roster", "saslauth", "admin_shell", "ping", "disco", "version", "mam", "rest"]


def call(port, method, path, body=None, content_type=None, accept=None, authorization=ALICE):
    """One HTTP request with urllib: (status, content type, body)."""
    headers = {"Host": HOST, "Authorization": authorization}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    data = body.encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def start(prosody_factory):
    port = free_port()
    prosody = prosody_factory({}, global_options={
        "http_ports": [port], "http_interfaces": ["127.0.0.1"], "modules_enabled": MODULES})
    return prosody, port


def received(client, body, since):
    return client.wait_for(lambda s: s.name == "message" and s.body == body and (s.frm or "").startswith("alice@"),
                           since=since, what=repr(body))


def test_path_parameters_forms_and_text_send_what_they_say(prosody_factory, connect):
    prosody, port = start(prosody_factory)
    bob = connect(prosody, "bob")
    since = bob.mark()

    status, _, body = call(port, "POST", "/rest/message/chat/bob@localhost", "by path and text", "text/plain")
    assert status == 202, body
    assert received(bob, "by path and text", since).type == "chat"
    status, ctype, body = call(port, "POST", "/rest/message/headline/bob@localhost", "body=by+path+and+form",
                               "application/x-www-form-urlencoded")
    assert status == 202 and ctype == "application/x-www-form-urlencoded", (status, ctype, body)
    form = urllib.parse.parse_qs(body)
    assert form["from"] == ["alice@localhost"] and form["type"] == ["headline"], form
    assert received(bob, "by path and form", since).type == "headline"
    status, _, body = call(port, "POST", "/rest/message/normal/bob@localhost", '{"body": "by path and JSON"}',
                           "application/json")
    assert status == 202, body
    assert received(bob, "by path and JSON", since).type == "normal"
    status, _, body = call(port, "POST", "/rest", "to=bob%40localhost&body=a+plain+form",
                           "application/x-www-form-urlencoded")
    assert status == 202, body
    received(bob, "a plain form", since)
    # A form field the mapping does not know is refused naming it; nothing is sent.
    status, _, body = call(port, "POST", "/rest", "to=bob%40localhost&body=x&sticker=1",
                           "application/x-www-form-urlencoded")
    assert status == 400 and "'sticker'" in body, body
    got = [s.body for s in bob.received[since:] if s.name == "message"]
    assert got == ["by path and text", "by path and form", "by path and JSON", "a plain form"], got


def test_get_queries_answer_with_the_iq_answer_in_the_format_asked(prosody_factory):
    _, port = start(prosody_factory)
    status, ctype, body = call(port, "GET", "/rest/ping/localhost")
    assert status == 200 and ctype == "application/xmpp+xml" and "type='result'" in body, (status, ctype, body)
    status, ctype, body = call(port, "GET", "/rest/version/localhost", accept="application/json")
    assert status == 200 and ctype == "application/json", (status, ctype, body)
    answer = json.loads(body)
    assert answer["kind"] == "iq" and answer["type"] == "result" and answer["version"]["name"] == "Prosody", answer
    status, _, body = call(port, "GET", "/rest/disco/localhost", accept="application/json")
    assert status == 200, body
    assert "urn:xmpp:ping" in json.loads(body)["disco"]["features"], body
    status, _, body = call(port, "GET", "/rest/items/localhost", accept="application/json")
    assert status == 200 and json.loads(body)["type"] == "result", body
    status, _, body = call(port, "GET", "/rest/disco/localhost?node=nosuchnode", accept="application/json")
    assert status == 200 and json.loads(body)["type"] == "error", body
    # An empty <to>: the account itself, as a client's stanza without one.
    status, _, body = call(port, "GET", "/rest/disco/", accept="application/json")
    answer = json.loads(body)
    assert status == 200 and answer["type"] == "result" and answer["from"] == "alice@localhost", body
    assert {"category": "account", "type": "registered"} in [
        {k: i[k] for k in ("category", "type")} for i in answer["disco"]["identities"]], body
    status, _, body = call(port, "GET", "/rest/nosuchquery/localhost")
    assert status == 400 and "nosuchquery" in body, body


def test_an_archive_query_answers_with_its_results_then_the_final_iq(prosody_factory, connect):
    prosody, port = start(prosody_factory)
    bob = connect(prosody, "bob")
    since = bob.mark()
    for text in ["first", "second"]:
        status, _, body = call(port, "POST", "/rest/message/chat/bob@localhost", text, "text/plain")
        assert status == 202, body
        received(bob, text, since)
    status, ctype, body = call(port, "GET", "/rest/archive/?with=bob%40localhost&max=10", accept="application/json")
    assert status == 200 and ctype == "application/json", (status, ctype, body)
    stanzas = json.loads(body)["xmpp"]
    assert [s["kind"] for s in stanzas] == ["message", "message", "iq"], body
    assert [s["archive"]["forward"]["message"]["body"] for s in stanzas[:2]] == ["first", "second"], body
    assert stanzas[-1]["type"] == "result", body
    status, ctype, body = call(port, "GET", "/rest/archive/?with=bob%40localhost")
    assert status == 200 and body.startswith("<xmpp>") and body.count("<result") == 2, body


# A stand-in for mod_firewall: refuses, on pre-stanza, what mentions "contraband", answering the
# sending session with an error, as a firewall's BOUNCE does.
GUARD = """
local st = require "util.stanza";
module:hook("pre-stanza", function (event)
	local body = event.stanza:get_child_text("body");
	if body and body:find("contraband", 1, true) then
		event.origin.send(st.error_reply(event.stanza, "modify", "policy-violation", "not here"));
		return true;
	end
end);
"""


def test_what_is_sent_over_http_passes_the_pre_stanza_events(prosody_factory, connect, tmp_path):
    (tmp_path / "mod_e2e_guard.lua").write_text(GUARD)
    port = free_port()
    prosody = prosody_factory({}, global_options={
        "http_ports": [port], "http_interfaces": ["127.0.0.1"], "plugin_paths": [str(tmp_path)],
        "modules_enabled": MODULES + ["e2e_guard"]})
    bob = connect(prosody, "bob")
    since = bob.mark()
    status, ctype, body = call(port, "POST", "/rest",
                               "<message type='chat' to='bob@localhost'><body>some contraband</body></message>",
                               "application/xmpp+xml", accept="application/json")
    answer = json.loads(body)
    assert status == 200 and answer["type"] == "error", (status, body)
    assert answer["error"]["condition"] == "policy-violation", body
    status, _, body = call(port, "POST", "/rest",
                           "<message type='chat' to='bob@localhost'><body>nothing to declare</body></message>",
                           "application/xmpp+xml")
    assert status == 202, body
    received(bob, "nothing to declare", since)
    got = [s.body for s in bob.received[since:] if s.name == "message"]
    assert got == ["nothing to declare"], got
