"""A minimal HTTP/1.1 response parser and request builder for the load engines.

Only what a keep-alive JSON client needs: status line, ``Content-Length`` or
``Transfer-Encoding: chunked`` bodies, ``Connection: close``. The engines use raw
non-blocking sockets because ``requests`` (and even ``http.client`` with its
per-response objects) costs more CPU per request than the server under test on this
2-core machine.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The bytes received are not an HTTP/1.x response we can parse."""


def build_request(
    method: str,
    path: str,
    host: str,
    port: int,
    body: bytes | None = None,
    content_type: str = "application/json",
    extra: str = "",
) -> bytes:
    """The bytes of one keep-alive HTTP/1.1 request; ``extra`` is more header lines,
    each ending in CRLF (``X-API-Key: ...\\r\\n``)."""
    hosthdr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = f"{method} {path} HTTP/1.1\r\nHost: {hosthdr}\r\n{extra}"
    if body is None:
        return (head + "\r\n").encode("latin-1")
    return (head + f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode(
        "latin-1"
    ) + body


def parse_response(buf: bytearray | bytes):
    """Parse one response from the start of ``buf``.

    Returns ``None`` when more bytes are needed, else ``(status, body, consumed,
    close)``: the status code, the body bytes, how many bytes of ``buf`` the response
    took, and whether the server will close the connection afterwards.

    A response without a length that is not chunked is read until the connection
    closes: this returns ``None`` for it until the caller passes ``eof=True`` through
    :func:`parse_response_eof`.

    Raises:
        ProtocolError: malformed status line, length or chunk header.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            raise ProtocolError("response header larger than 64 KiB")
        return None
    head = bytes(buf[:end]).lower()
    if not head.startswith(b"http/1."):
        raise ProtocolError(f"not an HTTP/1.x response: {bytes(buf[:40])!r}")
    try:
        status = int(head[9:12])
    except ValueError as exc:
        raise ProtocolError(f"bad status line {bytes(buf[:40])!r}") from exc
    close = b"\r\nconnection: close" in head or head.startswith(b"http/1.0")
    start = end + 4
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", start, close
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 17)
        try:
            length = int(head[i + 17 : j if j >= 0 else len(head)])
        except ValueError as exc:
            raise ProtocolError("bad Content-Length") from exc
        if len(buf) < start + length:
            return None
        return status, bytes(buf[start : start + length]), start + length, close
    if b"\r\ntransfer-encoding: chunked" in head:
        return _parse_chunked(buf, start, status, close)
    return None  # body delimited by EOF


def parse_response_eof(buf: bytearray | bytes):
    """Like :func:`parse_response` once the peer has closed: an EOF-delimited body ends here."""
    res = parse_response(buf)
    if res is not None:
        return res
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    status = int(bytes(buf[9:12]))
    return status, bytes(buf[end + 4 :]), len(buf), True


def _parse_chunked(buf, pos: int, status: int, close: bool):
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        except ValueError as exc:
            raise ProtocolError("bad chunk size") from exc
        pos = eol + 2
        if size == 0:
            # Skip optional trailers up to the empty line.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return status, bytes(body), eol + 2, close
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        pos += size + 2
