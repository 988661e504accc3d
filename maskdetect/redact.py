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
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

SECRET_PARAMS = frozenset({"key", "api_key", "apikey", "token", "access_token", "auth", "secret", "signature", "sig",
                           "password", "passwd", "pass", "pwd",
                           "x-amz-signature", "x-amz-credential", "x-amz-security-token"})
#: A parameter whose name has one of these words (split at ``-``, ``_``, ``.``) is secret too (its value is hidden
#: even in plain text that is not a URL).
SECRET_WORDS = frozenset({"secret", "token", "password", "passwd", "pwd", "signature", "sig", "credential",
                          "credentials", "auth", "authorization", "apikey", "session", "sessionid", "private"})
#: The only query parameters whose values are shown in a URL we print; every other value is ``***``.
SHOWN_PARAMS = frozenset({"fps", "channel", "subtype", "stream", "format", "width", "height", "resolution",
                          "quality", "codec", "transport", "rtsp_transport", "x-amz-algorithm", "x-amz-date",
                          "x-amz-expires", "x-amz-signedheaders", "x-goog-algorithm", "sv", "se", "sr", "sp"})
#: Webhook path segments shown as they are; every other segment is hidden.
HARMLESS_SEGMENTS = frozenset({"api", "services", "hooks", "hook", "webhook", "webhooks", "webhookb2",
                               "incomingwebhook", "v1", "v2", "v3", "v4", "alert", "alerts", "events", "notify",
                               "workflows", "triggers", "slack", "github", "invoke"})
THIRD_PARTY_LOGGERS = ("urllib3", "requests", "absl", "roboflow", "PIL", "matplotlib", "h5py")
HIDDEN = "***"

_URL = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s'\"<>]+)")
# a value stops at "?" and "=" too, so ``url=https://h/x?key=K`` still shows the inner ``key=`` on its own
_PARAM = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&\s'\"#?=]*)")
_QUERY = re.compile(r"\?(?P<query>[^\s'\"<>#]+)")
_WORD = re.compile(r"[^\s'\"<>()\[\],;]+")
_WORD_SPLIT = re.compile(r"[-_.]+")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
                   r"|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_secrets: set[str] = set()


def is_secret_param(name: str) -> bool:
    """True for ``key``, ``token``, ``X-Amz-Signature``, ``client_secret``, ``refresh_token``, ... ."""
    name = name.lower()
    return name in SECRET_PARAMS or any(word in SECRET_WORDS for word in _WORD_SPLIT.split(name))


def split_userinfo(rest: str) -> tuple[str | None, str]:
    """Split what follows ``scheme://`` into user info and the rest: ``"user:p@ss@host/x?q"`` ->
    ``("user:p@ss", "host/x?q")``, ``(None, rest)`` when there is none.

    The user info runs to the last ``@`` of the URL when no ``/`` comes before it (so a password may hold ``@``,
    ``:``, ``?`` and ``#``), or when the text before the first ``/`` holds a ``:`` or an ``@`` (a password with a
    ``/``). Only an ``@`` that follows a ``/`` of a plain host name is part of the path
    (``webhook.office.com/webhookb2/ID@TENANT/...``). When in doubt, more is taken as user info (and hidden)."""
    at = rest.rfind("@")
    if at < 0:
        return None, rest
    slash = rest.find("/", 0, at)
    if slash < 0:
        return rest[:at], rest[at + 1:]
    head = rest[:slash]
    if ":" in head or "@" in head or "?" in head or "#" in head:
        return rest[:at], rest[at + 1:]
    return None, rest


def register_secret(value: str | None) -> None:
    """Hide `value` (4 characters or more) in every text and log record from now on."""
    if value and len(value) >= 4:
        _secrets.add(value)
    install_log_filter()  # first again, should a library have set its own record factory since


def _hide_query(query: str, *, every: bool = False) -> str:
    """``a=1&fps=5&b`` -> ``a=***&fps=5&b``: values shown only for :data:`SHOWN_PARAMS` (none if `every`)."""
    out = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        shown = not every and name.lower() in SHOWN_PARAMS and not is_secret_param(name)
        out.append(pair if not sep or shown or not value else f"{name}={HIDDEN}")
    return "&".join(out)


def _token_word(word: str) -> bool:
    """A word that may be a key: 8+ characters mixing letters and digits, 12+ mixing cases, or 20+ of anything."""
    letters = any(c.isalpha() for c in word)
    digits = any(c.isdigit() for c in word)
    cases = any(c.islower() for c in word) and any(c.isupper() for c in word)
    return (len(word) >= 8 and letters and digits) or (len(word) >= 12 and cases) or len(word) >= 20


def looks_like_a_token(segment: str) -> bool:
    """True for a path segment or value that may be a key (``AbCd1234xyz``, a UUID, a long hash), judged word by
    word (``efficientdet_d0_coco17_tpu-32.tar.gz`` is not one; ``b2f9c1e0-...`` is)."""
    text = unquote(segment)
    return any(_token_word(w) for w in re.split(r"[^A-Za-z0-9]+", text)) or (len(text) >= 40 and " " not in text)


def _hide_path(path: str, *, webhook: bool) -> str:
    def hide(seg: str) -> str:
        if not seg or seg.lower() in HARMLESS_SEGMENTS:
            return seg
        return HIDDEN if webhook or looks_like_a_token(seg) else seg
    return "/".join(hide(seg) for seg in path.split("/"))


def _url_for_print(url: str, *, every_value: bool = False, webhook: bool = False) -> str:
    """The one rule for a URL we print: scheme, host and port as they are (when they parse as such), ``***``
    for the user info, every query value not in :data:`SHOWN_PARAMS`, every path segment that looks like a key
    (every segment but the harmless ones for a webhook); no fragment. A string that does not parse as
    ``scheme://host/...`` shows its scheme at most."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        head = url.partition(":")[0]
        return f"{head}:{HIDDEN}" if ":" in url and _SCHEME.fullmatch(head) else HIDDEN
    userinfo, rest = split_userinfo(rest)
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    if not _HOST.fullmatch(host):
        return f"{scheme}://{HIDDEN}"
    tail = tail.partition("#")[0]
    path, qsep, query = tail.partition("?")
    shown = f"{scheme}://" + (f"{HIDDEN}@" if userinfo is not None else "") + host + _hide_path(path, webhook=webhook)
    return shown + (qsep + _hide_query(query, every=every_value or webhook) if qsep else "")


def _hide_params(text: str) -> str:
    return _PARAM.sub(lambda m: f"{m['name']}={HIDDEN}" if is_secret_param(m["name"]) and m["value"] else m[0], text)


def _hide_credential_word(match: re.Match) -> str:
    """A word that is not a ``scheme://`` URL but holds ``...:...@host`` (``smtp:/user:pw@host``,
    ``smtp//user:pw@host``, ``user:pw@host``): everything before the last ``@`` hidden."""
    word = match[0]
    at = word.rfind("@")
    if "://" in word or at < 0 or ":" not in word[:at]:
        return word
    return f"{HIDDEN}@{word[at + 1:]}"


def redact(text: object) -> str:
    """`text` with registered secrets, every URL cut down to what :func:`redact_url` shows, query values outside
    a URL hidden by the same allow-list, and ``...:...@host`` words (a URL with a typo) hidden before the ``@``."""
    text = str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    text = _URL.sub(lambda m: _url_for_print(m[0]), text)
    text = _WORD.sub(_hide_credential_word, text)
    text = _QUERY.sub(lambda m: "?" + _hide_query(m["query"]), text)
    return _hide_params(text)


def redact_url(url: str, *, all_query: bool = False, webhook: bool = False) -> str:
    """`url` as we print it (see :func:`redact`): user info, query values outside :data:`SHOWN_PARAMS` (all of
    them with `all_query` or `webhook`) and key-like path segments (with `webhook`, every segment not in
    :data:`HARMLESS_SEGMENTS`) replaced by ``***``, without its fragment; a string that does not parse as a URL
    is shown as its scheme at most."""
    shown = _url_for_print(str(url), every_value=all_query, webhook=webhook)
    for secret in sorted(_secrets, key=len, reverse=True):
        shown = shown.replace(secret, HIDDEN)
    return shown


def _looks_like_a_key(value: str) -> bool:
    """At least 8 characters mixing two of: lower case, upper case, digits, other (not a plain word)."""
    classes = (any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value),
               any(not c.isalnum() for c in value))
    return len(value) >= 8 and sum(classes) >= 2


def register_url_secrets(url: str, *, webhook: bool = False) -> None:
    """Register what `url` holds that is secret, so later messages quoting it (urllib3's request lines, ffmpeg's
    errors) are clean: the user info and the password (also percent-decoded; also in a URL with a typo such as
    ``smtp:/user:pw@host``), every query value of 6 characters or more not in :data:`SHOWN_PARAMS` and those of
    secret parameters, and path segments that look like keys; with `webhook`, every query value and path
    segment of 6 characters or more that is not harmless."""
    scheme, sep, rest = url.partition("://")
    if sep and _SCHEME.fullmatch(scheme):
        userinfo, rest = split_userinfo(rest)
    else:  # a typo: "smtp:/u:pw@h", "smtp//u:pw@h", "u:pw@h"
        at = url.rfind("@")
        userinfo = re.sub(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:?)?/*", "", url[:at]) if at >= 0 else None
        rest = url[at + 1:] if at >= 0 else url
    if userinfo is not None:
        password = userinfo.partition(":")[2]
        for value in (userinfo, password, unquote(userinfo), unquote(password)):
            register_secret(value)
    try:
        parts = urlsplit(f"{scheme}://{rest}" if sep else rest)
    except ValueError:
        return
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        shown = k.lower() in SHOWN_PARAMS and not is_secret_param(k)
        if webhook or is_secret_param(k) or _looks_like_a_key(v) or (not shown and len(v) >= 6):
            register_secret(v)
    for seg in parts.path.split("/"):
        if seg.lower() in HARMLESS_SEGMENTS:
            continue
        if (webhook and len(seg) >= 6) or looks_like_a_token(seg):
            register_secret(seg)
            register_secret(unquote(seg))


def quiet_third_party_loggers(level: int = logging.WARNING) -> None:
    """Keep the libraries that log request lines and internals (urllib3, requests, absl, ...) at `level` even
    with ``-v``; what they still log passes through the redacting record factory."""
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)


_previous_factory = logging.getLogRecordFactory()


_inside = threading.local()


def _redacting_factory(*args, **kwargs) -> logging.LogRecord:
    if getattr(_inside, "active", False):
        # A library's factory that wrapped this one (Ray's does, on import) and was then wrapped by it when
        # install_log_filter ran again calls back in here: the record is made once, and redacted on the way out.
        return logging.LogRecord(*args, **kwargs)
    _inside.active = True
    try:
        record = _previous_factory(*args, **kwargs)
    finally:
        _inside.active = False
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
