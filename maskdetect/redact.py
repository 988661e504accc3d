"""Secrets (API keys, stream and webhook passwords) never reach a log, an output or an exception: the one place
that hides them.

* :func:`redact` hides, anywhere in a text, the user info of URLs (``rtsp://user:pass@cam/x`` ->
  ``rtsp://***@cam/x``), the values of secret query parameters (``key=``, ``api_key=``, ``token=``,
  ``password=``, ...) and every value given to :func:`register_secret`;
* :func:`redact_url` does the same to one URL, drops its fragment, and with ``all_query=True`` hides every query
  value (a webhook's whole URL is a secret);
* importing this module installs a log-record factory that redacts every record when it is made, whichever
  logger makes it (urllib3, requests, roboflow, ...).

``maskdetect/colab.py`` keeps a copy of the text rules, because it runs before the package is installed.

Example:
    >>> redact("could not open rtsp://admin:hunter2@10.0.0.5/stream1?token=abc&fps=5")
    'could not open rtsp://***@10.0.0.5/stream1?token=***&fps=5'
    >>> redact_url("https://bob:s3cret@hooks.example/alert?token=abc&room=1", all_query=True)
    'https://***@hooks.example/alert?token=***&room=***'
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = frozenset({"key", "api_key", "apikey", "token", "access_token", "auth", "secret", "signature", "sig",
                           "password", "passwd", "pass", "pwd",
                           "x-amz-signature", "x-amz-credential", "x-amz-security-token"})

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"(?i)\b(" + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS, key=len, reverse=True))
                           + r")=([^&\s'\"#]+)")
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Hide `value` (4 characters or more) in every text and log record from now on."""
    if value and len(value) >= 4:
        _secrets.add(value)
    install_log_filter()  # first again, should a library have set its own record factory since


def redact(text: object) -> str:
    """`text` with URL user info, secret query values and registered secrets replaced by ``***``."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}***@", str(text))
    text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def redact_url(url: str, *, all_query: bool = False) -> str:
    """`url` with its user info and secret query values (every query value if `all_query`) replaced by ``***``,
    without its fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc if "@" not in parts.netloc else "***@" + parts.netloc.rsplit("@", 1)[1]
    query = urlencode([(k, "***" if all_query or k.lower() in SECRET_PARAMS else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def register_url_secrets(url: str) -> None:
    """Register the password and the secret query values of `url` (so later messages quoting them are clean)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k.lower() in SECRET_PARAMS:
            register_secret(v)
    if parts.password:
        register_secret(parts.password)


_previous_factory = logging.getLogRecordFactory()


def _redacting_factory(*args, **kwargs) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is not ours to fix
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    return record


def install_log_filter() -> None:
    """Redact every log record when it is created: logger filters would miss child loggers created later,
    handler filters the handlers added later. Called on import; call it again after importing a library that
    may set a record factory of its own."""
    global _previous_factory
    if logging.getLogRecordFactory() is not _redacting_factory:
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_redacting_factory)


install_log_filter()
