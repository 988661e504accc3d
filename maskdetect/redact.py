"""Secrets (API keys, stream and webhook passwords) never reach a log, an output or an exception: the one place
that hides them.

* :func:`redact` hides, anywhere in a text, first every value given to :func:`register_secret`, then the user
  info of URLs (``rtsp://user:p@ss/w:rd@cam/x`` -> ``rtsp://***@cam/x``: it runs to the last ``@`` before the
  query, so passwords may hold ``@``, ``:`` and ``/``), and the values of secret query parameters (``key=``,
  ``token=``, ``password=``, ``X-Amz-Signature=``, and any name with a word such as ``secret`` or ``token`` in
  it: ``client_secret=``, ``refresh_token=``);
* :func:`redact_url` does the same to one URL, drops its fragment, and with ``all_query=True`` hides every query
  value; ``webhook=True`` also hides every path segment not known to be harmless (a webhook's path is its key:
  ``https://hooks.slack.com/services/***/***/***``);
* :func:`register_url_secrets` registers what a URL the user gave us holds: its user info and password, the
  values of secret parameters and every value that looks like a key; for a webhook, its path segments too;
* importing this module installs a log-record factory that redacts every record when it is made, whichever
  logger makes it (urllib3, requests, absl, roboflow, ...); :func:`quiet_third_party_loggers` also keeps the
  chatty ones (which print request lines) at WARNING.

``maskdetect/colab.py`` keeps a copy of the basic text rules, because it runs before the package is installed.

Example:
    >>> redact("could not open rtsp://admin:hunter2@10.0.0.5/stream1?token=abc&fps=5")
    'could not open rtsp://***@10.0.0.5/stream1?token=***&fps=5'
    >>> redact_url("https://bob:s3cret@hooks.example/alert?token=abc&room=1", all_query=True)
    'https://***@hooks.example/alert?token=***&room=***'
    >>> redact_url("https://hooks.slack.com/services/T0001/B0002/XXXXYYYYZZZZ", webhook=True)
    'https://hooks.slack.com/services/***/***/***'
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = frozenset({"key", "api_key", "apikey", "token", "access_token", "auth", "secret", "signature", "sig",
                           "password", "passwd", "pass", "pwd",
                           "x-amz-signature", "x-amz-credential", "x-amz-security-token"})
#: A parameter whose name has one of these words (split at ``-``, ``_``, ``.``) is secret too.
SECRET_WORDS = frozenset({"secret", "token", "password", "passwd", "pwd", "signature", "sig", "credential",
                          "credentials", "auth", "authorization", "apikey", "session", "sessionid", "private"})
#: Webhook path segments shown as they are; every other segment is hidden.
HARMLESS_SEGMENTS = frozenset({"api", "services", "hooks", "hook", "webhook", "webhooks", "webhookb2",
                               "incomingwebhook", "v1", "v2", "v3", "v4", "alert", "alerts", "events", "notify",
                               "workflows", "triggers", "slack", "github", "invoke"})
THIRD_PARTY_LOGGERS = ("urllib3", "requests", "absl", "roboflow", "PIL", "matplotlib", "h5py")

_URL = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s'\"<>]+)")
# a value stops at "?" and "=" too, so ``url=https://h/x?key=K`` still shows the inner ``key=`` on its own
_PARAM = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&\s'\"#?=]*)")
_WORD_SPLIT = re.compile(r"[-_.]+")
_secrets: set[str] = set()


def is_secret_param(name: str) -> bool:
    """True for ``key``, ``token``, ``X-Amz-Signature``, ``client_secret``, ``refresh_token``, ... ."""
    name = name.lower()
    return name in SECRET_PARAMS or any(word in SECRET_WORDS for word in _WORD_SPLIT.split(name))


def split_userinfo(rest: str) -> tuple[str | None, str]:
    """Split what follows ``scheme://`` into user info and the rest: ``"user:p@ss@host/x?q"`` ->
    ``("user:p@ss", "host/x?q")``, ``(None, rest)`` when there is none.

    The user info runs to the last ``@`` before the query, so a password may hold ``@``, ``:`` and even ``/``
    (when ``user:`` comes before the first ``/``); an ``@`` that only follows a ``/`` of a host name is part of
    the path (``webhook.office.com/webhookb2/ID@TENANT/...``)."""
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0:
        return None, rest
    slash = rest.find("/", 0, end)
    head = rest[:slash] if slash >= 0 else rest[:end]
    if slash < 0 or at < slash or ":" in head or "@" in head:
        return rest[:at], rest[at + 1:]
    return None, rest


def register_secret(value: str | None) -> None:
    """Hide `value` (4 characters or more) in every text and log record from now on."""
    if value and len(value) >= 4:
        _secrets.add(value)
    install_log_filter()  # first again, should a library have set its own record factory since


def _hide_params(text: str) -> str:
    return _PARAM.sub(lambda m: f"{m['name']}=***" if is_secret_param(m["name"]) and m["value"] else m[0], text)


def _hide_url(match: re.Match) -> str:
    userinfo, rest = split_userinfo(match["rest"])
    return match["scheme"] + ("***@" if userinfo is not None else "") + rest


def redact(text: object) -> str:
    """`text` with registered secrets, URL user info and secret query values replaced by ``***``."""
    text = str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _hide_params(_URL.sub(_hide_url, text))


def redact_url(url: str, *, all_query: bool = False, webhook: bool = False) -> str:
    """`url` with its user info and secret query values (every query value if `all_query` or `webhook`; with
    `webhook`, every path segment not in :data:`HARMLESS_SEGMENTS` too) replaced by ``***``, without its
    fragment."""
    scheme, sep, rest = url.partition("://")
    userinfo, rest = split_userinfo(rest) if sep else (None, url)
    try:
        parts = urlsplit(f"{scheme}://{rest}" if sep else rest)
    except ValueError:
        return "<unparseable url>"
    netloc = ("***@" if userinfo is not None else "") + parts.netloc
    path = parts.path
    if webhook:
        path = "/".join(seg if not seg or seg.lower() in HARMLESS_SEGMENTS else "***" for seg in path.split("/"))
    query = urlencode([(k, "***" if all_query or webhook or is_secret_param(k) else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return redact(urlunsplit((parts.scheme, netloc, path, query, "")))


def _looks_like_a_key(value: str) -> bool:
    """At least 8 characters mixing two of: lower case, upper case, digits, other (not a plain word)."""
    classes = (any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value),
               any(not c.isalnum() for c in value))
    return len(value) >= 8 and sum(classes) >= 2


def register_url_secrets(url: str, *, webhook: bool = False) -> None:
    """Register what `url` holds that is secret, so later messages quoting it (urllib3's request lines, ffmpeg's
    errors) are clean: the user info and the password (also percent-decoded), the values of secret query
    parameters and of those that look like keys; with `webhook`, every query value and path segment of 6
    characters or more that is not harmless."""
    scheme, sep, rest = url.partition("://")
    userinfo, rest = split_userinfo(rest) if sep else (None, url)
    if userinfo is not None:
        password = userinfo.partition(":")[2]
        for value in (userinfo, password, unquote(userinfo), unquote(password)):
            register_secret(value)
    try:
        parts = urlsplit(f"{scheme}://{rest}" if sep else rest)
    except ValueError:
        return
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if webhook or is_secret_param(k) or _looks_like_a_key(v):
            register_secret(v)
    if webhook:
        for seg in parts.path.split("/"):
            if len(seg) >= 6 and seg.lower() not in HARMLESS_SEGMENTS:
                register_secret(seg)


def quiet_third_party_loggers(level: int = logging.WARNING) -> None:
    """Keep the libraries that log request lines and internals (urllib3, requests, absl, ...) at `level` even
    with ``-v``; what they still log passes through the redacting record factory."""
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)


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
    may set a record factory of its own. maskdetect/colab.py loads this file by path before the package is
    installed: such a copy never replaces an installed filter, and the package's module replaces the copy's
    (the package's knows the registered secrets), so filters never chain to each other."""
    global _previous_factory
    current = logging.getLogRecordFactory()
    if current is _redacting_factory:
        return
    wrapped = getattr(current, "wraps_factory", None)  # set on the factory of a copy of this module
    if wrapped is not None and __name__ != "maskdetect.redact":
        return
    _previous_factory = wrapped if wrapped is not None else current
    _redacting_factory.wraps_factory = _previous_factory  # type: ignore[attr-defined]
    logging.setLogRecordFactory(_redacting_factory)


install_log_filter()
