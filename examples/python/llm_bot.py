#!/usr/bin/env python3
"""A language-model bot for mod_component_http, with nothing but the standard library: each
message goes to an OpenAI-compatible chat completions API, and the answer is streamed back to
the module as it is written, so the user watches it appear (README, Streamed answers).

    BOT_SECRET=... LLM_MODEL=llama3.2 python3 examples/python/llm_bot.py [PORT]   (default 8080)

Environment:
    LLM_API_URL    the API's chat completions endpoint
                   (default http://127.0.0.1:11434/v1/chat/completions, Ollama's; llama.cpp's
                   server, vLLM, LocalAI, OpenAI and most hosted APIs speak the same)
    LLM_MODEL      the model to ask (required)
    LLM_API_KEY    sent as `Authorization: Bearer ...`, when set
    LLM_SYSTEM_PROMPT  the first message of every conversation
    BOT_SECRET     the component's component_post_secret; without it the bot refuses to start,
                   unless BOT_INSECURE=1 (unsigned requests from anyone: for trying it out only)

Prosody side:
    Component "assistant.example.com" "component_http"
        component_post_url = "http://127.0.0.1:8080/"
        component_post_secret = "..."   -- the same as BOT_SECRET

What it shows:
- the request to the model: `"stream": true`, the conversation so far (the last 10 turns with
  this chat: the sender's bare JID, or the room), then the new message;
- the model's server-sent events read as they come (`choices[0].delta.content`, up to
  `data: [DONE]`), each written on at once as an NDJSON line `{"delta": "..."}` of a chunked
  `200` answer with `Content-Type: application/x-ndjson`; the module turns them into a first
  message and corrections;
- an API that fails (unreachable, an error status, a broken stream) becomes a short apology to
  the user, and the reason goes to the bot's log;
- the signature check is bot.py's (README, Signatures), and a retried delivery (same
  X-Delivery-Id) gets the answer already given, as one JSON object, without asking again.
"""

import http.client
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from collections import OrderedDict, defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bot import INSECURE, NO_SECRET, SECRET, verified

API_URL = os.environ.get("LLM_API_URL") or "http://127.0.0.1:11434/v1/chat/completions"
MODEL = os.environ.get("LLM_MODEL", "")
API_KEY = os.environ.get("LLM_API_KEY", "")
SYSTEM_PROMPT = os.environ.get("LLM_SYSTEM_PROMPT") or (
    "You are a helpful assistant in an instant messaging chat. Answer briefly, in plain text.")
NO_MODEL = "LLM_MODEL is not set: set it to the name of a model the API at LLM_API_URL serves"
APOLOGY = "Sorry, I cannot answer right now: the language model is not available."
TURNS = 10  # question-and-answer pairs remembered per chat

histories = defaultdict(lambda: deque(maxlen=2 * TURNS))  # chat -> its last messages, oldest first
answered = OrderedDict()  # X-Delivery-Id -> the text answered: the last 10,000
lock = threading.Lock()  # requests come in concurrently


class ModelError(Exception):
    """The model's API failed: unreachable, an error status, or a stream it could not read."""


def completions(messages):
    """Asks the model; yields the answer's pieces of text as they arrive."""
    payload = json.dumps({"model": MODEL, "messages": messages, "stream": True}).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if API_KEY:
        headers["Authorization"] = f"Bearer {API_KEY}"
    request = urllib.request.Request(API_URL, data=payload, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            for line in response:  # one server-sent event field per line
                line = line.decode("utf-8").rstrip("\r\n")
                if not line.startswith("data:"):
                    continue  # blank lines, comments, `event:` lines
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise ModelError(f"the stream said: {event['error']}")
                choices = event.get("choices") or [{}]
                content = (choices[0].get("delta") or {}).get("content")
                if content:
                    yield content
    except urllib.error.HTTPError as e:
        raise ModelError(f"{API_URL} answered {e.code}: {e.read(300).decode('utf-8', 'replace')}") from e
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        raise ModelError(f"{API_URL}: {e!r}") from e


def chat_of(stanza):
    """Whose conversation a message is part of: the room, or the sender's bare JID."""
    return stanza.get("room") or stanza["from"].split("/", 1)[0]


class Bot(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if SECRET and not verified(SECRET, self.headers, body):  # no SECRET: only with BOT_INSECURE=1
            return self.reply(401, None)
        stanza = json.loads(body)
        question = stanza.get("body")
        if stanza.get("kind") != "message" or stanza.get("type") == "error" or not (question or "").strip():
            return self.reply(204, None)  # an iq, a chat state, a receipt...: nothing to say
        delivery = self.headers.get("X-Delivery-Id")
        with lock:
            given = answered.get(delivery) if delivery is not None else None
        if given is not None:
            return self.reply(200, {"body": given})
        chat = chat_of(stanza)
        with lock:
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, *histories[chat],
                        {"role": "user", "content": question}]

        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        answer = ""
        try:
            try:
                for piece in completions(messages):
                    answer += piece
                    self.write_line({"delta": piece})
            except ModelError as e:
                print(f"the model failed for {chat}: {e}", file=sys.stderr, flush=True)
                apology = ("\n\n" if answer else "") + APOLOGY
                answer += apology
                self.write_line({"delta": apology})
            else:
                with lock:  # only whole answers are remembered
                    histories[chat].extend([{"role": "user", "content": question},
                                            {"role": "assistant", "content": answer}])
            self.wfile.write(b"0\r\n\r\n")  # the end of the body: the answer is complete
        except OSError as e:  # the module gave up on the stream (its timeouts) or went away
            print(f"the stream to {chat} broke: {e!r}", file=sys.stderr, flush=True)
            self.close_connection = True
        if delivery is not None:
            with lock:
                answered[delivery] = answer
                while len(answered) > 10_000:
                    answered.popitem(last=False)

    def write_line(self, obj):
        """One NDJSON line as one chunk, sent at once: the user sees it now, not at the end."""
        line = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

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
    if not MODEL:
        sys.exit(NO_MODEL)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Bot)
    if not SECRET:
        print("BOT_INSECURE=1: signatures are not checked", flush=True)
    print(f"listening on http://127.0.0.1:{port}/, asking {MODEL} at {API_URL}", flush=True)
    server.serve_forever()
