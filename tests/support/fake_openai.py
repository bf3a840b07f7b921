"""A stand-in OpenAI chat-completions server on a real 127.0.0.1 socket, with fault injection.

Shared by the tests and `bench/vlm_verifier.py` (one copy). It answers "Yes" for a crop whose mean colour is mostly red and
"No" otherwise, so a test can choose the answer by the crop it sends. Faults are queued per request:

    server.faults.extend(["500", "429:1", "slow:3", "malformed", "drop", "reject_logprobs"])
"""

from __future__ import annotations

import base64
import collections
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from PIL import Image, ImageStat

__all__ = ["FakeOpenAI"]


class FakeOpenAI:
    def __init__(self, delay: float = 0.0, logprobs: bool = True, p_answer: float = 0.95) -> None:
        self.delay, self.logprobs, self.p_answer = delay, logprobs, p_answer
        self.faults: collections.deque[str] = collections.deque()
        self.requests: list[dict[str, Any]] = []  # {"headers": {lowercased: value}, "body": {...}}
        self.reply: str | None = None  # fixed reply text instead of the colour rule
        self.in_flight = self.peak_in_flight = 0  # requests being answered now / at most at once
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        url = next(c["image_url"]["url"] for c in body["messages"][-1]["content"] if c["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        r, g, b = ImageStat.Stat(image).mean
        return "Yes" if r > g + b else "No"

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self._answer(body)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        if self.logprobs and body.get("logprobs"):
            first = text.split()[0] if text.split() else text
            other = {"Yes": "No", "No": "Yes"}.get(first, "Maybe")
            top = [{"token": first, "logprob": math.log(self.p_answer), "bytes": None},
                   {"token": other, "logprob": math.log(1 - self.p_answer), "bytes": None}]
            choice["logprobs"] = {"content": [{"token": first, "logprob": top[0]["logprob"], "bytes": None,
                                               "top_logprobs": top[: body.get("top_logprobs", 2)]}]}
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake"), "choices": [choice],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes; no 40 ms delayed-ACK stall

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    server.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                    fault = server.faults.popleft() if server.faults else ""
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    self._answer_post(body, fault)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer_post(self, body: dict[str, Any], fault: str) -> None:
                kind, _, arg = fault.partition(":")
                time.sleep(server.delay)
                if kind == "slow":
                    time.sleep(float(arg))
                elif kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                elif kind in ("500", "503"):
                    return self._send(int(kind), b'{"error": {"message": "overloaded"}}')
                elif kind == "429":
                    return self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": arg or "1"})
                elif kind == "malformed":
                    return self._send(200, b'{"id": "chatcmpl-fake", "choices": [')
                elif kind == "reject_logprobs" and body.get("logprobs"):
                    return self._send(400, b'{"error": {"message": "logprobs is not supported"}}')
                self._send(200, json.dumps(server._completion(body)).encode())

        return Handler
