"""The review page's local HTTP server (stdlib, threads, 127.0.0.1 only): the page, a JSON API over `Review`, the images.

    GET  /                          the page
    GET  /api/meta                  dataset, version, classes (every class the rules can produce), image sizes, counts
    GET  /api/boxes?offset=&limit=  boxes least agreement first, then the drawn ones
    GET  /images/<split>/<file>     an image of the version
    POST /api/decide                {"box": id, "decision": "accept" | "reject" | "relabel" | "move" | "add",
                                     "class": name, "xyxy": [x0, y0, x1, y1], "image": path}, or {"changes": [...]}
                                    (a grid page: one fsync for all); answered once the log has them on disk
    POST /api/undo                  takes the latest change back; {"undone": entry, "decision": the box's entry now}
    POST /api/finish                writes the next version; {"version": name, "path": folder}
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

from labelsieve.dataset import DatasetVersion
from labelsieve.errors import InputError
from labelsieve.review.session import Review

__all__ = ["ReviewServer"]

log = logging.getLogger(__name__)

_IMAGE = re.compile(r"/images/(train|val)/([0-9a-f]{24}\.[a-z]{3,4})")


class ReviewServer(ThreadingHTTPServer):
    """`ReviewServer(review, port=0)`; `.url` is where the page is; `.finished` is set once a new version is written."""

    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: socketserver's 5 reset connections when many decisions arrive at once

    def __init__(self, review: Review, host: str = "127.0.0.1", port: int = 0, reviewer: str = "") -> None:
        super().__init__((host, port), _Handler)
        self.review = review
        self.reviewer = reviewer
        self.finished = threading.Event()
        self.result: DatasetVersion | None = None
        self.page = files("labelsieve.review").joinpath("page.html").read_bytes()

    def server_close(self) -> None:
        super().server_close()
        self.review.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser closing a kept-alive connection is routine, not a traceback on the reviewer's terminal."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s went away", client_address)
        else:
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]!s}:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: Nagle + delayed ACK would add 40 ms

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _send(self, status: int, body: bytes, kind: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600, immutable" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _foreign(self) -> bool:
        """A request another site made the reviewer's browser send (DNS rebinding, a cross-site form): refused. Only a
        page served from this address, asking for it by address, gets an answer; a POST must be JSON, which a plain form
        cannot send and a cross-origin script cannot send without a preflight this server never grants."""
        port = self.server.server_address[1]
        hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        origin = self.headers.get("Origin")
        if self.headers.get("Host") not in hosts or (origin is not None and urlsplit(origin).netloc not in hosts) or (
                self.command == "POST" and self.headers.get_content_type() != "application/json"):
            self._json({"error": "only the review page itself may call this server"}, HTTPStatus.FORBIDDEN)
            return True
        return False

    def do_GET(self) -> None:
        if self._foreign():
            return
        url = urlsplit(self.path)
        review = self.server.review
        if url.path == "/":
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif url.path == "/api/meta":
            version = review.version
            self._json({"dataset": str(version.path.parent), "version": version.name, "id": version.id,
                        "classes": review.classes, "labels": version.classes,
                        "sizes": review.image_sizes(), "counts": review.counts(),
                        "finished": self.server.result and {"version": self.server.result.name,
                                                            "path": str(self.server.result.path)}})
        elif url.path == "/api/boxes":
            query = parse_qs(url.query)
            try:
                offset = int(query.get("offset", ["0"])[0])
                limit = int(query["limit"][0]) if "limit" in query else None
            except ValueError:
                self._json({"error": "offset and limit must be integers"}, HTTPStatus.BAD_REQUEST)
                return
            self._json({"total": len(review.rows) + len(review.added), "boxes": review.boxes(max(offset, 0), limit)})
        elif (m := _IMAGE.fullmatch(url.path)) and (path := review.version.path / "images" / m[1] / m[2]).is_file():
            self._send(HTTPStatus.OK, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/jpeg", cache=True)
        else:
            self._json({"error": f"no {url.path}"}, HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:
        if self._foreign():
            return
        path = urlsplit(self.path).path
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if not isinstance(body, dict):
                raise InputError("the body must be a JSON object")
            review = self.server.review
            if path in ("/api/decide", "/api/undo") and self.server.result is not None:
                raise InputError(f"this review is finished: {self.server.result.path}")
            if path == "/api/decide":
                entries = review.decide_many(body["changes"] if "changes" in body else [body])
                self._json({"decisions": entries, "decision": entries[-1] if entries else None,
                            "counts": review.counts()})
            elif path == "/api/undo":
                undone = review.undo()
                self._json({"undone": undone, "decision": undone and review.decisions.get(undone["box"]),
                            "counts": review.counts()})
            elif path == "/api/finish":
                if self.server.result is None:
                    self.server.result = review.finish(self.server.reviewer)
                    self.server.finished.set()
                self._json({"version": self.server.result.name, "path": str(self.server.result.path)})
            else:
                self._json({"error": f"no {path}"}, HTTPStatus.NOT_FOUND)
        except (InputError, KeyError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            self._json({"error": str(exc) if isinstance(exc, InputError) else f"bad request: {exc!r}"},
                       HTTPStatus.BAD_REQUEST)
