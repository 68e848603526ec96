"""A hand-written HTTP server on 127.0.0.1 and the S3 answers tests write for it.

For the tests of what a client does with answers moto's server never gives: a body cut
short or stalled, a reset connection, odd headers, an error in S3's XML.
"""

from __future__ import annotations

import socket
import threading
import time


class RawServer:
    """A one-answer-per-connection HTTP server on 127.0.0.1 whose answer a test writes by hand."""

    def __init__(self, answer) -> None:
        self.answer = answer  # callable(conn, request_bytes)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.closed = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn) -> None:
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                self.answer(conn, data)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        # A listening socket closed while another thread blocks in accept() keeps
        # listening until that accept returns; shutdown wakes it and ends it now.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def head(status: int, length: int, extra: str = "") -> bytes:
    """An answer's status line and headers (``extra``: more header lines, each ending in CRLF)."""
    reason = {200: "OK", 500: "Internal Server Error", 503: "Slow Down", 403: "Forbidden"}.get(status, "X")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Length: {length}\r\nContent-Type: application/xml\r\n"
            f"x-amz-request-id: r1\r\n{extra}\r\n").encode()


def error_xml(code: str) -> bytes:
    """S3's error body for ``code``."""
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message>"
            "<RequestId>r1</RequestId></Error>").encode()


def stalling(release: threading.Event):
    """An answer that sends 3 of 10 body bytes, then nothing until ``release`` is set."""
    def answer(conn, request):
        conn.sendall(head(200, 10) + b"abc")
        release.wait(5)
    return answer


def slow_reader(pace_s: float, chunk: int, fast_tail: int):
    """An answer that reads a PutObject's body ``chunk`` bytes every ``pace_s`` (its last
    ``fast_tail`` bytes, which the client's socket buffers may hold, at once), then says 200."""
    def answer(conn, request):
        head_, _, got = request.partition(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head_.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        received = len(got)
        while received < length:
            if received < length - fast_tail:
                time.sleep(pace_s)
            data = conn.recv(chunk)
            if not data:
                return
            received += len(data)
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: "abc"\r\n\r\n')
    return answer
