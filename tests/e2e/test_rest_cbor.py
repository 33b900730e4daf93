"""mod_rest's CBOR (README: Migrating from the current community mod_rest): a body in
application/cbor is the JSON's map in CBOR and is sent as its JSON would be; an answer is CBOR
when Accept asks (or, without one, when the request is CBOR), refusals included; what JSON cannot
say is refused with a 400 naming it, and nothing is sent. Real HTTP (urllib), CBOR from cbor2,
the stanzas checked at a real XMPP client."""

import http.server
import threading
import urllib.error
import urllib.request

import cbor2
import pytest

from e2e_util import free_port, wait_until

REST = "rest.localhost"
TOKEN = "Bearer dmVyeSBzZWNyZXQgdG9rZW4K"
CBOR = "application/cbor"
BASE_MODULES = ["roster", "saslauth", "admin_shell", "ping"]


def post(port, body, path="/rest", content_type=CBOR, accept=None):
    """POSTs the bytes `body` to the component's /rest with urllib: (status, content type, body)."""
    headers = {"Host": REST, "Authorization": TOKEN}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def rest(prosody_factory):
    """A Prosody whose component rest.localhost is mod_rest: (prosody, http_port)."""
    port = free_port()
    prosody = prosody_factory({REST: {"rest_credentials": TOKEN}}, component_modules={REST: "rest"},
                              global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"],
                                              "modules_enabled": BASE_MODULES})
    return prosody, port


def message_from_rest(client, body, since):
    return client.wait_for(lambda s: s.name == "message" and s.frm == REST and s.body == body, since=since,
                            what=f"{body!r} from {REST}")


def test_a_cbor_body_is_delivered_and_answered_in_cbor(rest, connect):
    prosody, port = rest
    alice = connect(prosody, "alice")
    since = alice.mark()
    status, content_type, body = post(port, cbor2.dumps({"to": "alice@localhost", "body": "sent in CBOR",
                                                         "subject": "CBOR"}))
    assert (status, content_type) == (202, CBOR), (status, content_type, body)
    sent = cbor2.loads(body)
    assert (sent["kind"], sent["type"], sent["to"], sent["from"], sent["body"]) == (
        "message", "chat", "alice@localhost", REST, "sent in CBOR"), sent
    message = message_from_rest(alice, "sent in CBOR", since)
    assert message.type == "chat" and message.child("subject").text == "CBOR", message

    # With path parameters, as a JSON body would be; Accept may still ask for JSON.
    status, content_type, body = post(port, cbor2.dumps({"body": "by path"}),
                                      path="/rest/message/headline/alice@localhost", accept="application/json")
    assert (status, content_type) == (202, "application/json"), (status, content_type, body)
    assert message_from_rest(alice, "by path", since).type == "headline"


def test_an_iq_is_answered_in_cbor_when_accept_asks(rest):
    _, port = rest
    status, content_type, body = post(port, b'{"to": "localhost", "ping": true}', content_type="application/json",
                                      accept="application/json;q=0.5, application/cbor")
    assert (status, content_type) == (200, CBOR), (status, content_type, body)
    answer = cbor2.loads(body)
    assert (answer["kind"], answer["type"], answer["from"], answer["to"]) == ("iq", "result", "localhost", REST), answer
    # A CBOR body without Accept is answered in CBOR; an XML one when Accept asks for CBOR, too.
    status, content_type, body = post(port, cbor2.dumps({"to": "localhost", "ping": True}))
    assert (status, content_type, cbor2.loads(body)["type"]) == (200, CBOR, "result"), body
    status, content_type, body = post(port, b"<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
                                      content_type="application/xmpp+xml", accept=CBOR)
    assert (status, content_type, cbor2.loads(body)["type"]) == (200, CBOR, "result"), body


@pytest.mark.parametrize("body, why", [
    (cbor2.dumps({"to": "alice@localhost", "body": b"bytes"}), "'body' is a byte string"),
    (cbor2.dumps({"to": "alice@localhost", "body": "x", 7: "seven"}), "a map key that is an integer"),
    (cbor2.dumps({"to": "alice@localhost", "body": cbor2.CBORTag(32, "https://example.org/")}), "CBOR tag 32"),
    (cbor2.dumps({"to": "alice@localhost", "body": "cut short"})[:-3], "invalid CBOR"),
    (cbor2.dumps(["alice@localhost", "a list"]), "expected a CBOR map"),
    (b'{"to": "alice@localhost", "body": "JSON, said to be CBOR"}', "invalid CBOR"),
])
def test_a_bad_cbor_body_is_refused_naming_why_and_nothing_is_sent(rest, connect, body, why):
    prosody, port = rest
    alice = connect(prosody, "alice")
    since = alice.mark()
    status, content_type, answer = post(port, body)
    assert (status, content_type) == (400, CBOR), (status, content_type, answer)
    refusal = cbor2.loads(answer)
    assert (refusal["type"], refusal["code"], refusal["error"]["condition"]) == ("error", 400, "bad-request"), refusal
    assert why in refusal["error"]["text"], refusal
    # Asked for JSON, the same refusal in JSON.
    status, content_type, answer = post(port, body, accept="application/json")
    assert (status, content_type) == (400, "application/json") and why.encode() in answer, answer
    # Nothing was sent: the next message is the first alice gets.
    assert post(port, cbor2.dumps({"to": "alice@localhost", "body": "after"}))[0] == 202
    message_from_rest(alice, "after", since)
    got = [s.xml for s in alice.received[since:] if s.name == "message"]
    assert len(got) == 1, got


class Callback(http.server.BaseHTTPRequestHandler):
    """A callback whose OPTIONS answer prefers CBOR, JSON next: records what it is POSTed."""
    posted = []

    def do_OPTIONS(self):
        self.send_response(200)
        self.send_header("Accept", "application/cbor, application/json;q=0.5")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posted.append((self.headers["Content-Type"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_callback_that_prefers_cbor_is_written_json(prosody_factory, connect):
    """Callbacks speak XML or JSON: CBOR first in the probe's Accept picks the JSON after it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    Callback.posted = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prosody = prosody_factory({REST: {"rest_callback_url": f"http://127.0.0.1:{server.server_port}/api"}},
                                  component_modules={REST: "rest"},
                                  global_options={"modules_enabled": BASE_MODULES})
        wait_until(lambda: "stanzas are POSTed as such" in prosody.log_text(), timeout=30,
                   what="the OPTIONS probe's answer")
        alice = connect(prosody, "alice")
        alice.send_message(f"bot@{REST}", "to the callback")
        wait_until(lambda: Callback.posted, timeout=30, what="the POST to the callback")
        content_type, body = Callback.posted[0]
        assert content_type.startswith("application/json") and b"to the callback" in body, Callback.posted
        assert "Could not switch" not in prosody.log_text()
    finally:
        server.shutdown()
        server.server_close()
