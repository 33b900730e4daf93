#!/usr/bin/env python3
"""A mod_component_http bot in Python, with nothing but the standard library.

    BOT_SECRET=... python3 examples/python/bot.py [PORT]      (default port 8080)

It refuses to start without BOT_SECRET; BOT_INSECURE=1 instead accepts unsigned requests from
anyone (for trying it out without a secret, never exposed).

Prosody side:
    Component "bot.example.com" "component_http"
        component_post_url = "http://127.0.0.1:8080/"
        component_post_stanzas = { "message", "iq" }
        component_post_secret = "..."   -- the same as BOT_SECRET

What it shows:
- checks X-Signature (README, Signatures: an HMAC-SHA256 over the timestamp, X-Delivery-Id,
  X-Retry-Count and the body) and refuses stale timestamps;
- answers a retried request (same X-Delivery-Id) with the answer it already gave, so a user
  never gets a reply twice and nothing is done twice; as the delivery id is signed, a replayed
  request is such a duplicate too;
- a chat reply, a headline (a non-chat message: "news"), and an iq answered with a stanza
  (XEP-0092 software version);
- a photo or any file (a message with `oob_url`) answered with a thumbs-up reaction to it and the
  file sent back (`reactions` names the message by its `id`, in a room by its `stanza_id`);
- a picture the bot makes itself ("chart"): a PNG drawn with zlib, sent as `file` (base64, name,
  type); the module uploads it to the server's upload service and the user sees it inline, the
  body after it as its caption;
- a stanza it has nothing to say to gets 204: accepted, no reply;
- a message sent on the bot's own initiative ("ping me"): POSTed to the component's push
  endpoint (PUSH_URL, e.g. http://bot.example.com:5280/component_http, with PUSH_TOKEN equal to
  component_post_push_credentials).
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import threading
import time
import urllib.request
import zlib
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree

SECRET = os.environ.get("BOT_SECRET", "").encode()
INSECURE = os.environ.get("BOT_INSECURE") == "1"
NO_SECRET = ("BOT_SECRET is not set: set it to the component's component_post_secret, "
             "or set BOT_INSECURE=1 to accept unsigned requests from anyone")
PUSH_URL, PUSH_TOKEN = os.environ.get("PUSH_URL"), os.environ.get("PUSH_TOKEN", "")
answered = OrderedDict()  # X-Delivery-Id -> (status, body): the last 10,000 answers
handled = 0
lock = threading.Lock()  # requests come in concurrently: one sender's in order, others meanwhile


def verified(secret: bytes, headers, body: bytes) -> bool:
    timestamp = headers.get("X-Signature-Timestamp", "")
    delivery, retry = headers.get("X-Delivery-Id", ""), headers.get("X-Retry-Count", "")
    signed = f"v1\n{timestamp}\n{delivery}\n{retry}\n".encode() + body
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    fresh = timestamp.isdecimal() and abs(time.time() - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(expected.encode(), headers.get("X-Signature", "").encode())


def push(stanza):
    """Sends a message of the bot's own: a second after it was asked to."""
    time.sleep(1)
    message = json.dumps({"to": stanza["from"], "from": stanza["to"], "body": "ping!"}).encode()
    request = urllib.request.Request(PUSH_URL, data=message, method="POST", headers={
        "Content-Type": "application/json", "Authorization": PUSH_TOKEN})
    urllib.request.urlopen(request, timeout=10).close()


def chart_png(values=(3, 7, 4, 9, 6), width=100, height=60):
    """A bar chart of `values` as a PNG file: white background, one blue bar per value."""
    bar = width // len(values)
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # PNG filter type 0 for the row
        for x in range(width):
            value = values[min(x // bar, len(values) - 1)]
            filled = x % bar >= 2 and height - y <= value * height // max(values)
            row += b"\x33\x66\xcc" if filled else b"\xff\xff\xff"
        rows.append(bytes(row))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def answer(stanza):
    """What to answer a stanza with: (HTTP status, JSON object or None)."""
    global handled
    handled += 1
    if stanza["kind"] == "iq":
        iq = ElementTree.fromstring(stanza["stanza"])
        if iq.get("type") == "get" and iq.find("{jabber:iq:version}query") is not None:
            return 200, {"stanza": "<iq type='result'><query xmlns='jabber:iq:version'>"
                                   "<name>python example bot</name><version>1.0</version></query></iq>"}
        return 501, None  # feature-not-implemented, for every other iq
    if stanza.get("oob_url"):
        reply = {"oob_url": stanza["oob_url"], "body": "Nice one! Here it is back."}
        message_id = stanza.get("stanza_id") or stanza.get("id")
        if message_id:
            reply["reactions"] = {"id": message_id, "reactions": ["\N{THUMBS UP SIGN}"]}
        return 200, reply
    text = stanza.get("body")
    if text is None:
        return 204, None  # a chat state, a receipt...: nothing to say
    if text.strip().lower() == "ping me" and PUSH_URL:
        threading.Thread(target=push, args=(stanza,), daemon=True).start()
        return 200, {"body": "I will, in a second."}
    if text.strip().lower() == "chart":
        png = base64.b64encode(chart_png()).decode()
        return 200, {"body": "Today's chart", "file": {"data": png, "name": "chart.png", "type": "image/png"}}
    if text.strip().lower() == "news":
        return 200, {"type": "headline", "body": "Nothing new today."}
    return 200, {"body": f"You said: {text} (#{handled})"}


class Bot(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if SECRET and not verified(SECRET, self.headers, body):  # no SECRET: only with BOT_INSECURE=1
            return self.reply(401, None)
        delivery = self.headers.get("X-Delivery-Id")  # the module always sends one; curl may not
        with lock:
            result = answered.get(delivery) if delivery is not None else None
            if result is None:
                result = answer(json.loads(body))
                if delivery is not None:
                    answered[delivery] = result
                    while len(answered) > 10_000:
                        answered.popitem(last=False)
        status, payload = result
        self.reply(status, payload)

    def reply(self, status, payload):
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if not SECRET and not INSECURE:
        sys.exit(NO_SECRET)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Bot)
    if not SECRET:
        print("BOT_INSECURE=1: signatures are not checked", flush=True)
    print(f"listening on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()
