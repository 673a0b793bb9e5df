"""Where one HTTP/1.1 request ends in the bytes a client has sent: its head, and how long its body is.

A body is framed only by one ``Content-Length``. A request with ``Transfer-Encoding``, several or a
malformed ``Content-Length``, or a body over the limit is handed to its handler with its head alone
(the handler refuses it) and the connection is closed after the answer, so its body is never read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:([^\r]*)")
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue")


class HeadTooLarge(ValueError):
    """A request head longer than the port accepts."""


@dataclass(frozen=True)
class Frame:
    """One request's place in the buffer."""

    head_end: int  # where the head (blank line included) ends
    body: int  # body bytes to wait for after it
    close_after: bool  # close the connection after the answer: its body is not read
    expect_continue: bool  # the client waits for "100 Continue" before it sends the body
    method: str
    path: str

    @property
    def size(self) -> int:
        return self.head_end + self.body


def find_frame(buf: bytearray, searched: int, max_header_bytes: int, max_body_bytes: int) -> Frame | None:
    """The frame of the request at the start of ``buf``, or None while its head is incomplete
    (``searched``: how much of ``buf`` an earlier call already searched). Raises HeadTooLarge."""
    end = buf.find(_END, max(0, searched - len(_END) + 1))
    if end < 0 or end > max_header_bytes:
        if end > max_header_bytes or len(buf) > max_header_bytes:
            raise HeadTooLarge(f"request head over {max_header_bytes} bytes")
        return None
    head = bytes(buf[:end]).lower()  # the method and path are compared as lower case too
    method, _, rest = head.partition(b"\r\n")[0].partition(b" ")
    path = rest.partition(b" ")[0].split(b"?", 1)[0]
    lengths = {value.strip() for value in _CONTENT_LENGTH.findall(head)}
    chunked = b"\r\ntransfer-encoding:" in head
    expect = _EXPECT_CONTINUE.search(head) is not None
    length = next(iter(lengths)) if len(lengths) == 1 else b"0"
    unframed = chunked or len(lengths) > 1 or not length.isdigit() or len(length) > 15
    body = 0 if unframed else int(length)
    if body > max_body_bytes:
        unframed, body = True, 0
    return Frame(end + len(_END), body, unframed, expect and body > 0, method.decode("latin-1").upper(),
                 path.decode("latin-1"))
