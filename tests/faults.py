"""A small HTTP fault proxy for tests: put it between boto3 and moto, and chosen requests fail.

    proxy = FaultProxy(moto_endpoint).start()
    proxy.fail("SageMaker.CreateTrainingJob", times=2, answer=THROTTLING)   # answered here
    proxy.fail("PUT /bucket/", times=1, answer=SLOW_DOWN)
    proxy.lose_answer("SageMaker.CreateTrainingJob")   # forwarded, but the client sees a 500
    gate = proxy.hold("SageMaker.CreateTrainingJob")    # kept waiting until gate.set()
    proxy.reset("PUT /bucket/key")                      # the connection closes, no answer
    proxy.delay("PUT /bucket/key", seconds=3)           # answered late: the client times out
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    ...
    proxy.seen("SageMaker.CreateTrainingJob")   # what reached the proxy, with what it answered

A request is named by its `X-Amz-Target` header for JSON APIs (`SageMaker.CreateTrainingJob`,
`Logs_20140328.GetLogEvents`) and by `METHOD /path` otherwise (S3); a rule matches when its
pattern is a regular expression found in that name. Rules apply in the order they were added,
each to its next `times` matching requests.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    """A canned HTTP answer."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_error(status: int, code: str, message: str) -> Answer:
    """An AWS JSON-protocol error (SageMaker, CloudWatch Logs, STS over JSON…)."""
    body = json.dumps({"__type": code, "message": message}).encode()
    return Answer(status, body, (("Content-Type", "application/x-amz-json-1.1"),
                                 ("x-amzn-ErrorType", code)))


def xml_error(status: int, code: str, message: str) -> Answer:
    """An S3 (REST-XML) error."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()
    return Answer(status, body, (("Content-Type", "application/xml"),))


THROTTLING = json_error(400, "ThrottlingException", "Rate exceeded")
SLOW_DOWN = xml_error(503, "SlowDown", "Please reduce your request rate.")
INTERNAL_ERROR = json_error(500, "InternalFailure", "An internal error occurred")
RESET = Answer(0, b"")  # no answer at all: the connection is closed


@dataclass
class Rule:
    pattern: re.Pattern[str]
    times: int
    answer: Answer
    forward: bool  # pass the request on first (its effect happens), then answer with a fault
    gate: threading.Event | None = None  # hold the request until the gate opens
    delay: float = 0.0  # pass the request on after this long, and answer with upstream's answer


@dataclass
class Seen:
    name: str
    status: int
    faulted: bool
    headers: dict[str, str] = field(default_factory=dict)  # the request's, names lower-case
    body: bytes = b""


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        parts = urlsplit(self.upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail(self, pattern: str, times: int = 1, answer: Answer = THROTTLING) -> None:
        """Answer the next `times` matching requests with `answer`, without passing them on."""
        with self._lock:
            self.rules.append(Rule(re.compile(pattern), times, answer, forward=False))

    def lose_answer(self, pattern: str, times: int = 1, answer: Answer = INTERNAL_ERROR) -> None:
        """Pass the next `times` matching requests on, but answer the client with `answer`:
        the request took effect and its answer was lost on the way back."""
        with self._lock:
            self.rules.append(Rule(re.compile(pattern), times, answer, forward=True))

    def hold(self, pattern: str, answer: Answer = INTERNAL_ERROR) -> threading.Event:
        """Keep the next matching request waiting, unanswered, until the returned event is set
        (then answer it with `answer`, not passing it on): time for a test to kill the client
        in the middle of a call. The request is in `seen()` from the moment it arrives."""
        gate = threading.Event()
        with self._lock:
            self.rules.append(Rule(re.compile(pattern), 1, answer, forward=False, gate=gate))
        return gate

    def reset(self, pattern: str, times: int = 1) -> None:
        """Close the connection of the next `times` matching requests without an answer."""
        with self._lock:
            self.rules.append(Rule(re.compile(pattern), times, RESET, forward=False))

    def delay(self, pattern: str, seconds: float, times: int = 1) -> None:
        """Answer the next `times` matching requests only after `seconds` (then pass them on):
        a client with a shorter timeout gives up first."""
        with self._lock:
            self.rules.append(Rule(re.compile(pattern), times, INTERNAL_ERROR, forward=True,
                                   delay=seconds))

    def seen(self, pattern: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.log if re.search(pattern, s.name)]

    # ----------------------------------------------------------------------------------------

    def _rule_for(self, name: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.pattern.search(name):
                    rule.times -= 1
                    return rule
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        target = handler.headers.get("X-Amz-Target")
        name = target or f"{handler.command} {handler.path}"
        rule = self._rule_for(name)
        if rule is not None and rule.gate is not None:
            with self._lock:
                self.log.append(Seen(name, rule.answer.status, True))
            rule.gate.wait(timeout=120)
        if rule is not None and rule.answer is RESET:
            with self._lock:
                self.log.append(Seen(name, 0, True))
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is None or rule.forward:
            status, headers, payload = self._forward(handler, body)
        if rule is not None and not rule.delay:
            status, headers, payload = rule.answer.status, list(rule.answer.headers), \
                rule.answer.body
        if rule is None or rule.gate is None:
            with self._lock:
                self.log.append(Seen(name, status, rule is not None,
                                     {k.lower(): v for k, v in handler.headers.items()},
                                     body if len(body) <= 65536 else b""))
        try:
            handler.send_response(status)
            for key, value in headers:
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up waiting (a delay rule)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("transfer-encoding", "connection", "content-length")}
        headers["Content-Length"] = str(len(body))
        try:
            connection.request(handler.command, handler.path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
