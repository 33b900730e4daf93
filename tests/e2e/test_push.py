"""The push endpoint under a hostile or unlucky client (README: Sending on the bot's own initiative;
mod_rest): credentials that would open it to anyone, iqs that wait across a reload or unload,
reused iq ids, the cap on waiting iqs, and a webhook whose answers Prosody cannot route."""

import threading
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

from conftest import BOT
from e2e_webhook import Reply
from test_rest import REST, TOKEN, post, start

BOT_JID = "echo@bot.localhost"
VERSION = "<query xmlns='jabber:iq:version'/>"


def error_lines(prosody):
    return [line for line in prosody.log_text().splitlines() if "\terror\t" in line]


class HeldWebhook:
    """Holds every request until `release()`, then answers an iq with a version named after the
    id it carries on the wire. `arrived(n)` waits until n requests are held."""

    def __init__(self, hook):
        self.hook = hook
        self.released = threading.Event()
        hook.handler = self.answer

    def answer(self, req):
        assert self.released.wait(60), "never released"
        wire_id = ET.fromstring(req.json["stanza"]).get("id")
        return Reply.with_json({"stanza": f"<iq><query xmlns='jabber:iq:version'><name>{wire_id}</name>"
                                          "</query></iq>"})

    def arrived(self, count):
        return self.hook.wait_for_requests(count, timeout=30)

    def release(self):
        self.released.set()


def rest_and_bot(prosody_factory, hook, **rest_options):
    """mod_rest on rest.localhost, and a component_http bot whose webhook answers iqs."""
    return start(prosody_factory, {
        REST: {"rest_credentials": TOKEN, **rest_options},
        BOT: {"component_post_url": hook.url(), "component_post_stanzas": ["message", "iq"],
              "component_post_ordered": False},  # the held iqs from one sender all reach the webhook
    })


def push_iq(port, iq_id=None):
    id_attr = f" id='{iq_id}'" if iq_id else ""
    return post(port, f"<iq type='get' to='{BOT_JID}'{id_attr}>{VERSION}</iq>")


def test_empty_or_invalid_push_options_keep_the_module_from_loading(prosody_factory, webhook):
    prosody, port = start(prosody_factory, {
        REST: {"rest_credentials": ""},
        "rest2.localhost": {"rest_credentials": TOKEN, "rest_iq_timeout": -1},
        BOT: {"component_post_url": webhook.url(), "component_post_push_credentials": " "},
        "ok.localhost": {"rest_credentials": TOKEN},  # so Prosody serves HTTP
    }, modules={"rest2.localhost": "rest", "ok.localhost": "rest"})
    errors = "\n".join(error_lines(prosody))
    for expected in ["rest_credentials is empty", "rest_iq_timeout must be",
                     "component_post_push_credentials is empty"]:
        assert expected in errors, errors
    # No endpoint on any of them: a bare "Authorization:" header (Prosody reads it as "") routes nothing.
    assert post(port, "<message to='alice@localhost'/>", token="", host="ok.localhost")[0] == 401
    for host, path in [(REST, "/rest"), ("rest2.localhost", "/rest"), (BOT, "/component_http")]:
        status, _, _ = post(port, "<message to='alice@localhost'><body>x</body></message>", token="", host=host,
                            path=path)
        assert status == 404, (host, status)
    assert prosody.alive()


def test_an_empty_authorization_header_is_refused(prosody_factory, connect):
    prosody, port = start(prosody_factory, {REST: {"rest_credentials": TOKEN}})
    alice = connect(prosody)
    since = alice.mark()
    status, headers, _ = post(port, "<message to='alice@localhost'><body>spam</body></message>", token="")
    assert status == 401 and "Bearer realm=" in headers.get("WWW-Authenticate", "")
    post(port, "<message to='alice@localhost'><body>marker</body></message>")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "marker"


def test_a_pushed_iq_without_a_valid_type_is_refused_with_400(prosody_factory, connect):
    prosody, port = start(prosody_factory, {REST: {"rest_credentials": TOKEN}})
    alice = connect(prosody)
    since = alice.mark()
    for body in ["<iq to='localhost'/>", "<iq to='localhost' type='bogus' id='b1'/>",
                 f"<iq to='{alice.full_jid}' type='bogus' id='b2'/>"]:
        status, _, text = post(port, body)
        assert status == 400 and text.strip(), (body, status, text)
    post(port, "<message to='alice@localhost'><body>marker</body></message>")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "marker"
    assert [s for s in alice.received[since:] if s.name == "iq"] == []
    assert "Traceback" not in prosody.log_text() and "stack traceback" not in prosody.log_text()


def test_pushed_iqs_reusing_an_id_each_get_their_own_answer(prosody_factory, make_webhook):
    held = HeldWebhook(make_webhook())
    _, port = rest_and_bot(prosody_factory, held.hook)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(push_iq, port, "same")
        held.arrived(1)
        second = pool.submit(push_iq, port, "same")
        requests = held.arrived(2)
        held.release()
        answers = [first.result(), second.result()]
    wire_ids = [ET.fromstring(r.json["stanza"]).get("id") for r in requests]
    assert len(set(wire_ids)) == 2 and "same" not in wire_ids, wire_ids
    names = set()
    for status, _, body in answers:
        assert status == 200, body
        answer = ET.fromstring(body)
        assert (answer.get("type"), answer.get("id")) == ("result", "same"), body
        names.add(answer.find("{jabber:iq:version}query/{jabber:iq:version}name").text)
    assert names == set(wire_ids), "each push got the answer to its own iq"


def test_pushed_iqs_beyond_the_cap_get_503_and_are_taken_again_once_answered(prosody_factory, make_webhook):
    held = HeldWebhook(make_webhook())
    _, port = rest_and_bot(prosody_factory, held.hook, rest_max_push_iqs=2)
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(push_iq, port, f"w{i}") for i in range(2)]
        held.arrived(2)
        status, headers, text = push_iq(port, "over")
        assert status == 503 and headers.get("Retry-After") == "1", (status, text)
        assert "rest_max_push_iqs" in text
        held.release()
        assert [f.result()[0] for f in waiting] == [200, 200]
    status, _, body = push_iq(port, "after")
    assert status == 200 and "id='after'" in body.replace('"', "'"), body
    assert len(held.hook.requests) == 3, "the refused push was not sent"


def test_a_pushed_iq_waiting_during_reload_or_unload_is_answered_503(prosody_factory, make_webhook):
    held = HeldWebhook(make_webhook())
    prosody, port = rest_and_bot(prosody_factory, held.hook)
    try:
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(push_iq, port, "r1")
            held.arrived(1)
            prosody.reload_module("rest", REST)
            status, headers, text = waiting.result()
            assert status == 503 and headers.get("Retry-After") == "1", (status, text)
            # The reloaded module takes pushes again.
            waiting = pool.submit(push_iq, port, "u1")
            held.arrived(2)
            out = prosody.shell("module", "unload", "rest", REST)
            assert out.returncode == 0, out.stdout + out.stderr
            status, _, text = waiting.result()
            assert status == 503, (status, text)
    finally:
        held.release()
    assert prosody.alive()


def test_answers_prosody_cannot_route_cost_no_other_answer_of_the_batch(prosody_factory, make_webhook, connect):
    """A reply that makes Prosody raise (an iq get without a child, to the server) among good ones:
    every good one arrives. The webhook holds every request until all arrived, so the answers come
    back together, in the same batches."""
    count = 40
    hook = make_webhook()
    everyone = threading.Barrier(count, timeout=60)

    def answer(req):
        everyone.wait()
        body = req.json["body"]
        if body.startswith("bad"):
            return Reply.with_json({"kind": "iq", "type": "get", "to": "localhost"})
        return Reply.with_json({"body": f"answer to {body}"})

    hook.handler = answer
    prosody, _ = start(prosody_factory, {BOT: {"component_post_url": hook.url(), "component_post_ordered": False}})
    alice = connect(prosody)
    since = alice.mark()
    bodies = [f"{'bad' if i % 2 else 'good'}-{i}" for i in range(count)]
    for body in bodies:
        alice.send_message(BOT_JID, body)
    expected = sorted(f"answer to {b}" for b in bodies if b.startswith("good"))
    got = alice.wait_for_count(lambda s: s.name == "message" and s.type != "error", len(expected), since=since, timeout=30)
    assert sorted(s.body for s in got) == expected
    assert prosody.alive()


def raw_post(port, head_lines, body_chunks):
    """Sends a request head and body pieces as given; returns the status line and what followed."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode())
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break  # refused before the body: the answer is what counts
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.endswith(b"\n"):
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return answer.decode(errors="replace")


def test_a_chunked_push_is_refused_with_411_not_read_as_empty(prosody_factory, connect):
    """Prosody's HTTP server does not read chunked request bodies: the push is refused saying so."""
    prosody, port = start(prosody_factory, {REST: {"rest_credentials": TOKEN}})
    alice = connect(prosody)
    since = alice.mark()
    stanza = b"<message to='alice@localhost'><body>in pieces</body></message>"
    pieces = [stanza[:20], stanza[20:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    answer = raw_post(port, ["POST /rest HTTP/1.1", f"Host: {REST}", f"Authorization: {TOKEN}",
                             "Content-Type: application/xmpp+xml", "Transfer-Encoding: chunked"], [body])
    assert answer.startswith("HTTP/1.1 411") and "Content-Length" in answer, answer
    post(port, "<message to='alice@localhost'><body>marker</body></message>")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "marker"
    assert prosody.alive()


def test_a_push_over_http_max_content_size_is_refused_before_its_body(prosody_factory, connect):
    prosody, port = start(prosody_factory, {REST: {"rest_credentials": TOKEN}})
    head = ["POST /rest HTTP/1.1", f"Host: {REST}", "Content-Type: application/xmpp+xml",
            f"Content-Length: {20 * 1024 * 1024}"]  # twice Prosody's default http_max_content_size
    answer = raw_post(port, head + ["Authorization: Bearer wrong"], [])
    assert answer.startswith("HTTP/1.1 403"), answer  # mod_rest: credentials not accepted
    answer = raw_post(port, head + [f"Authorization: {TOKEN}"], [])
    assert answer.startswith("HTTP/1.1 413") and "http_max_content_size" in answer, answer
    assert prosody.alive()
