"""uvicorn's httptools protocol with a bound on the request line and headers: 431 beyond it.

httptools (llhttp) puts no limit on a header block: a client can send megabytes of headers and
the server holds them all before the application sees anything. This subclass counts while
parsing. Complete parts (the target, each header) are counted exactly in the parser callbacks;
a header block still incomplete after a read counts every byte received for it, so a single
endless header line is cut off as well. Beyond the limit the connection gets a
``431 request-header-fields-too-large`` problem and is closed; the application never runs.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROBLEM_CODE = "request-header-fields-too-large"


class _HeadersTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: ClassVar[int] = 16_384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = False
        self._counted = 0  # exact: the target and the complete headers of this request
        self._received = 0  # reads while this request's header block was still incomplete
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._reading_headers and not self._refused:
            self._received += len(data)
            if self._received > self.max_header_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._counted = 0
        self._received = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._counted += size
        if self._counted > self.max_header_bytes:
            self._refused = True
            raise _HeadersTooLarge  # the parser stops; uvicorn calls send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._send_431()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        self._send_431()

    def _send_431(self) -> None:
        body = json.dumps(
            {
                "type": f"/problems/{PROBLEM_CODE}",
                "title": "Request header fields too large",
                "status": 431,
                "detail": f"The request line and headers exceed {self.max_header_bytes} bytes.",
                "instance": None,
                "code": PROBLEM_CODE,
                "requestId": None,
            },
            separators=(",", ":"),
        ).encode()
        content = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def bounded_httptools_protocol(max_header_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """A protocol class with this limit (uvicorn instantiates the class per connection)."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes},
    )
