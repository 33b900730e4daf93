"""FakeLlmApi: a scripted stand-in of an OpenAI-compatible `POST /v1/chat/completions` with
`"stream": true` (no network, no model), for the test of examples/python/llm_bot.py.

Each request is answered as such APIs stream: `text/event-stream`, a first chunk with the
assistant's role, one chunk per part with `choices[0].delta.content`, a last chunk with
`finish_reason: "stop"`, then `data: [DONE]`. What is answered is scripted per request:
`answer(request)` returns the parts (strings, joined without separators, and StreamHook steps
such as `wait(event)` where the answer should pause, see e2e_stream_hook.py), or an int: an HTTP
error status with an OpenAI-style error object. Requests are recorded in `requests` (`.json` is
what the bot sent: model, messages, stream; `.header("authorization")`).
"""

import json

from e2e_stream_hook import SSE, Framing, Step, StreamHook, done, piece

CHAT_COMPLETIONS = "/v1/chat/completions"


def chunk(content=None, role=None, finish_reason=None):
    """One `chat.completion.chunk` object."""
    delta = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


class FakeLlmApi:
    def __init__(self, answer):
        self.answer = answer
        self.hook = StreamHook(self._script, framing=Framing(SSE))

    @property
    def requests(self):
        return self.hook.requests

    @property
    def handler_errors(self):
        return self.hook.handler_errors

    def url(self):
        return self.hook.url(CHAT_COMPLETIONS)

    def close(self):
        self.hook.close()

    def _script(self, request):
        if request.path != CHAT_COMPLETIONS or not isinstance(request.json, dict):
            raise AssertionError(f"not a chat completion: {request.path} {request.raw_body[:200]!r}")
        answer = self.answer(request)
        if isinstance(answer, int):
            error = {"error": {"message": "the fake model is out of order", "type": "server_error"}}
            request.answer(answer, json.dumps(error), {"Content-Type": "application/json"})
            return None
        parts = [p if isinstance(p, Step) else piece(chunk(p)) for p in answer]
        return [piece(chunk(role="assistant")), *parts, piece(chunk(finish_reason="stop")), done()]
