"""Files a bot sends without hosting them (README: "Sending files"): uploaded to Prosody's own
http_file_share as the bot, then sent as the message clients show inline (its body the GET
URL, the URL again in jabber:x:oob), the caption after it; by reply, JSON push or multipart push,
in a chat or a room; and each way it can fail, with the one right outcome."""

import base64
import http.server
import json
import os
import re
import struct
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
import zlib

from conftest import BOT, REPO_ROOT
from e2e_util import free_port, wait_until
from e2e_webhook import Reply, WebhookProcess
from test_rest import TOKEN, post

UPLOAD = "upload.localhost"
MUC = "conference.localhost"
OOB = "jabber:x:oob"
BOT_JID = f"echo@{BOT}"


def png(width=3, height=2):
    """A small real PNG, made with zlib as the example bot makes one."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes(c for x in range(width) for c in (x * 80, y * 120, 200)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG = png()


def file_field(data=PNG, name="chart.png", type_="image/png"):
    return {"data": base64.b64encode(data).decode(), "name": name, "type": type_}


def start(prosody_factory, webhook, bot_options=None, upload=True, upload_options=None, muc=False):
    """Prosody with the bot (pushes on), HTTP on a free port, and, when `upload`, Prosody's own
    http_file_share on upload.localhost, serving its URLs on 127.0.0.1: (prosody, http_port)."""
    port = free_port()
    components = {BOT: {"component_post_url": webhook.url(), "component_post_push_credentials": TOKEN,
                        **(bot_options or {})}}
    modules = {}
    if upload:
        # The operator's line the README gives: Prosody 13 lets users upload, a component by name.
        components[UPLOAD] = {"http_host": "127.0.0.1", "http_file_share_access": [BOT], **(upload_options or {})}
        modules[UPLOAD] = "http_file_share"
    prosody = prosody_factory(components, component_modules=modules, muc=MUC if muc else None, global_options={
        "http_ports": [port], "http_interfaces": ["127.0.0.1"], "http_default_host": UPLOAD if upload else BOT,
        # disco: how the bot finds the upload service, as clients do.
        "modules_enabled": ["roster", "saslauth", "admin_shell", "disco"]})
    # The service is looked up once the server has started: wait for the answer.
    found = "Files the bot sends go to the upload service" if upload else "Looked for an upload service"
    wait_until(lambda: found in prosody.log_text(), timeout=20, what="the upload service lookup")
    return prosody, port


def push_json(port, **fields):
    status, headers, text = post(port, json.dumps(fields), content_type="application/json", host=BOT,
                                 path="/component_http")
    return status, text


def push_form(port, fields, file=None):
    """A multipart/form-data push, as `curl -F` writes it: (status, text)."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    if file:
        name, content_type, data = file
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                 f"Content-Type: {content_type}\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/component_http", data=body, method="POST",
        headers={"Host": BOT, "Authorization": TOKEN, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def oob_url(stanza):
    x = stanza.child("x", OOB)
    if x is None:
        return None
    url = [c for c in x if c.tag.endswith("url")]
    return url[0].text if url else None


def wait_file(client, since, frm=None, timeout=20):
    return client.wait_for(lambda s: s.name == "message" and oob_url(s) is not None
                           and (frm is None or s.frm == frm), since=since, timeout=timeout, what="a file message")


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(), r.headers["Content-Type"]


def assert_inline_file(client, message, data=PNG, content_type="image/png"):
    url = oob_url(message)
    assert message.body == url, message.xml
    assert fetch(url) == (data, content_type)
    return url


# -- a file goes out ----------------------------------------------------------------------------

def test_a_reply_with_a_file_is_shown_inline_with_its_caption_after_and_order_holds(
        prosody_factory, webhook, connect):
    # iqs are POSTed too: the upload's own iqs (the lookup's, the slot's answer) are not.
    prosody, _ = start(prosody_factory, webhook, {"component_post_stanzas": ["message", "iq"]})

    def answer(req):
        if req.json["kind"] != "message":
            return Reply(status=204)
        if req.json["body"] == "chart":
            return Reply.with_json({"body": "Today's chart", "file": file_field()})
        return Reply.with_json({"body": "after the chart"})
    webhook.handler = answer
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "chart")
    alice.send_message(BOT_JID, "and then?")
    message = wait_file(alice, since, frm=BOT_JID)
    assert_inline_file(alice, message)
    later = alice.wait_for(lambda s: s.name == "message" and s.body == "after the chart", since=since, timeout=20)
    bodies = [s.body for s in alice.received[since:] if s.name == "message" and s.body]
    assert bodies == [message.body, "Today's chart", "after the chart"], bodies
    assert later.frm == BOT_JID
    assert "Files the bot sends go to the upload service upload.localhost" in prosody.log_text()
    assert [r.json["kind"] for r in webhook.requests] == ["message", "message"], [r.json for r in webhook.requests]


def test_a_json_push_and_a_form_push_send_a_file(prosody_factory, webhook, connect):
    prosody, port = start(prosody_factory, webhook)
    alice = connect(prosody)
    since = alice.mark()
    status, text = push_json(port, to="alice@localhost", body="From JSON", file=file_field())
    assert status == 202, text
    first = wait_file(alice, since)
    assert oob_url(first) in text, "the answer is the message sent"
    assert_inline_file(alice, first)
    alice.wait_for(lambda s: s.body == "From JSON", since=since)

    since = alice.mark()
    report = b"%PDF-1.4 a report\n" + bytes(range(256))
    status, text = push_form(port, {"to": "alice@localhost", "body": "From a form"},
                             ("report.pdf", "application/pdf", report))
    assert status == 202, text
    second = wait_file(alice, since)
    assert_inline_file(alice, second, report, "application/pdf")
    caption = alice.wait_for(lambda s: s.body == "From a form", since=since)
    assert alice.received.index(caption) > alice.received.index(second)


def test_a_room_gets_the_file(prosody_factory, webhook, connect):
    prosody, port = start(prosody_factory, webhook, muc=True)
    alice = connect(prosody)
    room = f"ops@{MUC}"
    alice.join_room(room, "alice")
    since = alice.mark()
    status, text = push_json(port, to=room, type="groupchat", body="The chart", file=file_field())
    assert status == 202, text
    message = wait_file(alice, since, frm=f"{room}/bot")
    assert message.type == "groupchat"
    assert_inline_file(alice, message)
    alice.wait_said(room, "bot", "The chart", since=since)


class HeldStore(http.server.ThreadingHTTPServer):
    """Where the service's slots point (http_file_share_base_url): keeps each PUT waiting until
    `release` is set, then stores it; serves it back on GET with its type."""

    def __init__(self):
        self.release = threading.Event()
        self.files, self.puts = {}, []
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                data = self.rfile.read(int(self.headers["Content-Length"] or 0))
                store.puts.append(self.path)
                assert store.release.wait(60)
                store.files[self.path] = (data, self.headers["Content-Type"])
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                data, content_type = store.files[self.path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def base_url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/store/"


def test_an_answer_after_a_file_waits_for_the_file_to_go_first(prosody_factory, webhook, connect):
    store = HeldStore()
    try:
        prosody, _ = start(prosody_factory, webhook, upload_options={"http_file_share_base_url": store.base_url()})

        def answer(req):
            if req.json["body"] == "chart":
                return Reply.with_json({"body": "Today's chart", "file": file_field()})
            return Reply.with_json({"body": "after the chart"})
        webhook.handler = answer
        alice = connect(prosody)
        since = alice.mark()
        alice.send_message(BOT_JID, "chart")
        alice.send_message(BOT_JID, "and then?")
        # The second answer comes in while the file is still being PUT: held (or, were it not,
        # sent at once, ahead of the file).
        wait_until(lambda: store.puts and ('Holding a message to "alice@localhost/e2e"' in prosody.log_text()
                                           or any(s.body == "after the chart" for s in alice.received[since:])),
                   timeout=20, what="the second answer")
        store.release.set()
        alice.wait_for(lambda s: s.body == "after the chart", since=since, timeout=20)
        bodies = [s.body for s in alice.received[since:] if s.name == "message" and s.body]
        file = wait_file(alice, since)
        assert bodies == [file.body, "Today's chart", "after the chart"], bodies
        assert_inline_file(alice, file)
    finally:
        store.release.set()
        store.shutdown()


def test_the_example_bot_answers_chart_with_a_picture(prosody_factory, connect):
    """examples/python/bot.py, as the README's "Writing a bot" shows it: "chart" gets a PNG."""
    bot = WebhookProcess(["/usr/bin/python3", os.path.join(REPO_ROOT, "examples", "python", "bot.py"), "{port}"],
                         name="python-bot", env={"BOT_SECRET": "example-secret"})
    try:
        prosody, _ = start(prosody_factory, bot, {"component_post_secret": "example-secret"})
        alice = connect(prosody)
        since = alice.mark()
        alice.send_message(BOT_JID, "chart")
        message = wait_file(alice, since, frm=BOT_JID)
        url = oob_url(message)
        data, content_type = fetch(url)
        assert content_type == "image/png" and data.startswith(b"\x89PNG\r\n\x1a\n") and url.endswith("/chart.png")
        alice.wait_for(lambda s: s.body == "Today's chart", since=since)
    finally:
        bot.close()


def readme_section(title):
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        readme = f.read()
    return readme.split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]


def test_the_readmes_file_examples_are_the_bots_code_and_work_as_written(prosody_factory, webhook, connect, tmp_path):
    (snippet,) = re.findall(r"```python\n(.*?)```", readme_section("Writing a bot"), re.S)
    with open(os.path.join(REPO_ROOT, "examples", "python", "bot.py")) as f:
        assert "\n".join("    " + line for line in snippet.strip("\n").split("\n")) in f.read(), snippet
    (curl,) = [block for block in re.findall(r"```sh\n(.*?)```", readme_section("Sending files"), re.S)
               if block.startswith("curl")]
    token = re.search(r"Authorization: (Bearer \w+)", curl).group(1)
    prosody, port = start(prosody_factory, webhook, {"component_post_push_credentials": token})
    alice = connect(prosody)
    since = alice.mark()
    (tmp_path / "chart.png").write_bytes(PNG)
    command = (curl.replace("https://bot.example.com:5281", f"-sS -H 'Host: {BOT}' http://127.0.0.1:{port}")
               .replace("alice@example.com", "alice@localhost"))
    sent = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0 and "jabber:x:oob" in sent.stdout, (sent.stdout, sent.stderr)
    assert_inline_file(alice, wait_file(alice, since))
    alice.wait_for(lambda s: s.body == "Today's chart", since=since)


def test_a_reply_in_a_room_sends_the_file_to_the_room(prosody_factory, webhook, connect):
    room = f"dev@{MUC}"
    prosody, _ = start(prosody_factory, webhook, {"component_post_rooms": [f"{room}/Helper"]}, muc=True)
    webhook.respond_json({"body": "Here you go", "file": file_field()})
    alice = connect(prosody)
    alice.join_room(room, "alice")
    wait_until(lambda: 'joined dev@conference.localhost as "Helper"' in prosody.log_text(), timeout=20,
               what="the bot in the room")
    since = alice.mark()
    alice.say(room, "helper: a chart please")
    message = wait_file(alice, since, frm=f"{room}/Helper")
    assert message.type == "groupchat"
    assert_inline_file(alice, message)
    alice.wait_said(room, "Helper", "Here you go", since=since)


def test_mod_rest_takes_the_same_field(prosody_factory, connect):
    port = free_port()
    prosody = prosody_factory(
        {"rest.localhost": {"rest_credentials": TOKEN, "rest_max_file_size": 1000},
         UPLOAD: {"http_host": "127.0.0.1", "http_file_share_access": ["rest.localhost"]}},
        component_modules={"rest.localhost": "rest", UPLOAD: "http_file_share"},
        global_options={"http_ports": [port], "http_interfaces": ["127.0.0.1"], "http_default_host": UPLOAD,
                        "modules_enabled": ["roster", "saslauth", "admin_shell", "disco"]})
    wait_until(lambda: "Files the bot sends go to the upload service" in prosody.log_text(), timeout=20,
               what="the upload service lookup")
    alice = connect(prosody)
    since = alice.mark()
    status, _, text = post(port, json.dumps({"to": "alice@localhost", "body": "From mod_rest", "file": file_field()}),
                           content_type="application/json")
    assert status == 202, text
    assert_inline_file(alice, wait_file(alice, since, frm="rest.localhost"))
    alice.wait_for(lambda s: s.body == "From mod_rest", since=since)
    status, _, text = post(port, json.dumps({"to": "alice@localhost", "file": file_field(b"x" * 1001, "a", "a/b")}),
                           content_type="application/json")
    assert status == 413 and "rest_max_file_size" in text, (status, text)


# -- and when it cannot --------------------------------------------------------------------------

def test_without_an_upload_service_files_are_refused_naming_the_option(prosody_factory, webhook, connect):
    prosody, port = start(prosody_factory, webhook, upload=False)
    webhook.respond_json({"body": "caption", "file": file_field()})
    status, text = push_json(port, to="alice@localhost", file=file_field())
    assert status == 503 and "component_post_upload_service" in text, (status, text)
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "chart")
    error = alice.wait_for(lambda s: s.name == "message" and s.type == "error", since=since, timeout=20)
    assert "component_post_upload_service" in error.error[2], error.xml
    log = prosody.log_text()
    assert "Looked for an upload service on localhost" in log and "component_post_upload_service" in log


def test_a_file_over_the_limit_is_refused_with_the_limit(prosody_factory, webhook, connect):
    prosody, port = start(prosody_factory, webhook, {"component_post_max_file_size": 50})
    status, text = push_json(port, to="alice@localhost", file=file_field(b"x" * 51, "a.txt", "text/plain"))
    assert status == 413 and "51 bytes" in text and "50 bytes" in text, (status, text)
    # The service's own advertised limit applies too.
    prosody2, port2 = start(prosody_factory, webhook, upload_options={"http_file_share_size_limit": 40})
    status, text = push_json(port2, to="alice@localhost", file=file_field(b"x" * 41, "a.txt", "text/plain"))
    assert status == 413 and "40 bytes" in text and "max-file-size" in text, (status, text)
    # A reply: the sender gets the error, the log says the size and the limit.
    webhook.respond_json({"file": file_field(b"y" * 60, "b.txt", "text/plain")})
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "big")
    error = alice.wait_for(lambda s: s.name == "message" and s.type == "error", since=since, timeout=20)
    assert error.error[:2] == ("modify", "not-acceptable") and "60 bytes" in error.error[2], error.xml
    assert "60 bytes, more than the 50 bytes allowed (component_post_max_file_size)" in prosody.log_text()


def test_a_malformed_file_is_refused_naming_the_field(prosody_factory, webhook, connect):
    prosody, port = start(prosody_factory, webhook)
    for file, named in [({"data": "not base64!", "name": "a", "type": "text/plain"}, "'file.data'"),
                        ({"data": "aGk=", "type": "text/plain"}, "'file' needs 'name'"),
                        ({"data": "aGk=", "name": "a"}, "'file' needs 'type'")]:
        status, text = push_json(port, to="alice@localhost", file=file)
        assert status == 400 and named in text, (status, text)
    status, text = push_form(port, {"to": "alice@localhost"}, ("a.png", "", b"x"))
    assert status == 400 and "'file" in text, (status, text)
    webhook.respond_json({"file": {"data": "%%%", "name": "a", "type": "text/plain"}})
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "broken")
    error = alice.wait_for(lambda s: s.name == "message" and s.type == "error", since=since, timeout=20)
    assert error.error[1] == "internal-server-error", error.xml
    assert "'file.data' is not valid base64" in prosody.log_text()


def test_a_refused_slot_is_said(prosody_factory, webhook, connect):
    # Only someone else may upload: the service refuses the bot's slot request.
    prosody, port = start(prosody_factory, webhook,
                          upload_options={"http_file_share_access": ["nobody@localhost"]})
    status, text = push_json(port, to="alice@localhost", file=file_field())
    assert status == 502 and "refused the slot: forbidden" in text, (status, text)
    assert 'http_file_share_access = { "bot.localhost" }' in text, "the operator is told what to set"
    webhook.respond_json({"file": file_field()})
    alice = connect(prosody)
    since = alice.mark()
    alice.send_message(BOT_JID, "chart")
    error = alice.wait_for(lambda s: s.name == "message" and s.type == "error", since=since, timeout=20)
    assert "refused the slot" in error.error[2], error.xml


class FailingStore(http.server.ThreadingHTTPServer):
    """Where the service's slots point: answers every PUT with 503, counting them."""

    def __init__(self):
        self.puts = []
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                self.rfile.read(int(self.headers["Content-Length"] or 0))
                store.puts.append(self.path)
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_a_failed_upload_is_tried_once_more_then_said(prosody_factory, webhook, connect):
    store = FailingStore()
    try:
        prosody, port = start(prosody_factory, webhook, upload_options={
            "http_file_share_base_url": f"http://127.0.0.1:{store.server_address[1]}/store/"})
        status, text = push_json(port, to="alice@localhost", body="lost", file=file_field())
        assert status == 502 and "HTTP 503; then HTTP 503" in text, (status, text)
        assert len(store.puts) == 2, store.puts
        alice = connect(prosody)
        since = alice.mark()
        assert push_json(port, to="alice@localhost", body="plain")[0] == 202, "nothing else is lost"
        alice.wait_for(lambda s: s.body == "plain", since=since)
    finally:
        store.shutdown()
