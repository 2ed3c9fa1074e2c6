"""Storage URLs without their passwords, wherever the toolkit writes or prints them.

A password can sit in a URL's user part (``postgresql://user:PASS@host/db``, also with an empty user or an
unencoded ``@`` inside) or in its query string (``?password=PASS``). :func:`normalize_url` percent-encodes
an ``@`` inside the password, so that SQLAlchemy (which splits at the first ``@``) connects to the right host;
:func:`redact` parses with SQLAlchemy's ``make_url`` and hides both places. Every password seen by
:func:`normalize_url` or :func:`redact` is remembered for the life of the process, so :func:`redact_text`
also removes it from free text (database errors, the command line) where no URL structure is left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

__all__ = ["normalize_url", "redact", "redact_argv", "redact_text", "remember"]

MASK = "***"
_QUERY_SECRETS = ("password", "passwd", "pwd", "pass", "secret", "token", "sslpassword", "api_key", "apikey")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_secrets: set[str] = set()


def remember(secret: str | None) -> None:
    """Hide ``secret`` (and its percent-encoded and decoded forms) in everything :func:`redact_text` sees."""
    if secret and len(secret) >= 2:
        _secrets.update({secret, quote(secret, safe=""), unquote(secret)} - {""})


def _split_authority(url: str) -> tuple[str, str, str] | None:
    """``(scheme://, userinfo, rest)`` with the userinfo ending at the last ``@`` before the path."""
    head, sep, tail = url.partition("://")
    if not sep:
        return None
    end = len(tail)
    for ch in "/?#":  # the authority ends at the first of these that comes after the last '@'
        last_at = tail.rfind("@")
        i = tail.find(ch, last_at + 1 if last_at >= 0 else 0)
        if i >= 0:
            end = min(end, i)
    authority = tail[:end]
    user, at, host = authority.rpartition("@")
    if not at:
        return None
    return head + "://", user, host + tail[end:]


def normalize_url(url: str) -> str:
    """``url`` with ``@`` and ``:`` inside its password percent-encoded (as SQLAlchemy expects them)."""
    parts = _split_authority(url)
    if parts is None:
        _remember_query(url)
        return url
    scheme, userinfo, rest = parts
    user, colon, password = userinfo.partition(":")
    if colon:
        remember(password)
        password = quote(unquote(password), safe="")
    normal = f"{scheme}{user}{colon}{password}@{rest}"
    _remember_query(normal)
    return normal


def _remember_query(url: str) -> None:
    _, _, query = url.partition("?")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() in _QUERY_SECRETS:
            remember(value)


def redact(url: str) -> str:
    """``url`` without its password (user part and ``password=``-like query keys), via SQLAlchemy's parser."""
    from sqlalchemy.engine import make_url

    normal = normalize_url(url)
    try:
        parsed = make_url(normal)
    except Exception:  # not a URL SQLAlchemy understands: mask the user part and the query by hand
        return _redact_by_hand(normal)
    remember(parsed.password if isinstance(parsed.password, str) else None)
    query = {k: (MASK if k.lower() in _QUERY_SECRETS else v) for k, v in parsed.query.items()}
    for k, v in parsed.query.items():
        if k.lower() in _QUERY_SECRETS:
            for value in [v] if isinstance(v, str) else v:
                remember(value)
    if query != dict(parsed.query):
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=True).replace(quote(MASK, safe=""), MASK)


def _redact_by_hand(url: str) -> str:
    parts = _split_authority(url)
    if parts is not None:
        scheme, userinfo, rest = parts
        user, colon, _ = userinfo.partition(":")
        url = f"{scheme}{user}{':' + MASK if colon else ''}@{rest}"
    keys = "|".join(_QUERY_SECRETS)
    return re.sub(rf"(?i)([?&](?:{keys})=)[^&#\s]*", rf"\g<1>{MASK}", url)


def redact_text(text: str) -> str:
    """``text`` with every URL redacted and every remembered password masked."""
    text = _URL.sub(lambda m: redact(m.group(0)), text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line without passwords: URL arguments (``--storage URL`` or ``--storage=URL``) redacted."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.startswith("--") and "://" in value:
            out.append(f"{key}={redact(value)}")
        else:
            out.append(redact(arg) if "://" in arg else redact_text(arg))
    return out
