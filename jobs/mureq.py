"""`pioreactor.mureq`: the small HTTP client plugins use (`post`, `get`, `raise_for_status()`).

One request per call on the standard library's http.client, no pooling, no redirects followed
unless asked: what a plugin posting to a chat webhook or asking a local service needs.

    response = mureq.post(url, body=b"...", headers={"Content-Type": "application/json"})
    response = mureq.get(url, params={"q": "x"}, timeout=5)
    response.raise_for_status()          # HTTPErrorStatus for a 4xx/5xx answer
    response.status_code, response.body, response.json(), response.ok

A request that cannot be made (bad URL, refused, timed out) raises HTTPException; HTTPErrorStatus
is one too, so `except mureq.HTTPException` catches both.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import ssl
import urllib.parse
from email.message import Message
from typing import Any

DEFAULT_TIMEOUT = 15.0
MAX_REDIRECTS = 5


class HTTPException(Exception):
    """The request could not be completed (or, as HTTPErrorStatus, was answered with an error)."""


class HTTPErrorStatus(HTTPException):
    def __init__(self, status_code: int, response: Response | None = None) -> None:
        super().__init__(f"HTTP response returned error code {status_code}")
        self.status_code = status_code
        self.response = response


class Response:
    def __init__(self, url: str, status_code: int, headers: Message, body: bytes) -> None:
        self.url, self.status_code, self.headers, self.body = url, status_code, headers, body

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 400

    @property
    def content(self) -> bytes:
        return self.body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def raise_for_status(self) -> None:
        if not self.ok:
            raise HTTPErrorStatus(self.status_code, self)

    def __repr__(self) -> str:
        return f"Response(status_code={self.status_code})"


def request(method: str, url: str, *, body: bytes | str | None = None, json: Any = None,
            form: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT,
            verify: bool = True, max_redirects: int = 0) -> Response:
    headers = dict(headers or {})
    payload = _encode_body(body, json, form, headers)
    for _ in range(max(0, min(max_redirects, MAX_REDIRECTS)) + 1):
        response = _once(method, _with_params(url, params), payload, headers, timeout, verify)
        location = response.headers.get("Location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location or not max_redirects:
            return response
        url, params = urllib.parse.urljoin(url, location), None
        if response.status_code == 303:
            method, payload = "GET", None
    return response


def get(url: str, **kwargs: Any) -> Response:
    return request("GET", url, **kwargs)


def post(url: str, body: bytes | str | None = None, **kwargs: Any) -> Response:
    return request("POST", url, body=body, **kwargs)


def put(url: str, body: bytes | str | None = None, **kwargs: Any) -> Response:
    return request("PUT", url, body=body, **kwargs)


def patch(url: str, body: bytes | str | None = None, **kwargs: Any) -> Response:
    return request("PATCH", url, body=body, **kwargs)


def delete(url: str, **kwargs: Any) -> Response:
    return request("DELETE", url, **kwargs)


def head(url: str, **kwargs: Any) -> Response:
    return request("HEAD", url, **kwargs)


def _encode_body(body: bytes | str | None, json: Any, form: dict[str, Any] | None,
                 headers: dict[str, str]) -> bytes | None:
    given = [x is not None for x in (body, json, form)]
    if sum(given) > 1:
        raise ValueError("give at most one of body, json and form")
    if json is not None:
        headers.setdefault("Content-Type", "application/json")
        return jsonlib.dumps(json).encode("utf-8")
    if form is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urllib.parse.urlencode(form).encode("ascii")
    return body.encode("utf-8") if isinstance(body, str) else body


def _with_params(url: str, params: dict[str, Any] | None) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def _once(method: str, url: str, payload: bytes | None, headers: dict[str, str],
          timeout: float, verify: bool) -> Response:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPException(f"{url!r} is not an http:// or https:// URL")
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    connection = _connection(parts, timeout, verify)
    try:
        connection.request(method, target, body=payload, headers=headers)
        answer = connection.getresponse()
        return Response(url, answer.status, answer.headers, answer.read())
    except (OSError, http.client.HTTPException) as exc:  # (TimeoutError is an OSError)
        raise HTTPException(f"{method} {url} failed: {exc}") from exc
    finally:
        connection.close()


def _connection(parts: urllib.parse.SplitResult, timeout: float,
                verify: bool) -> http.client.HTTPConnection:
    assert parts.hostname is not None
    if parts.scheme == "http":
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
