"""Secrets never reach a person's screen or a log: masked URLs and a redactor for free text.

``mask_url`` hides the password of a URL (``postgresql://u:***@db/x``) and the values of query
parameters that carry credentials. ``Redactor`` replaces known secret values (as written and
percent-encoded) in any text; ``install_log_redaction`` applies one to every log record created
afterwards, whatever logger or handler it goes through.

>>> mask_url("http://alice:s3cret@mlflow.internal:5000/?token=abc")
'http://alice:***@mlflow.internal:5000/?token=***'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

MASK = "***"
#: query parameters whose values are credentials
_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&;#]*(?:token|password|passwd|pwd|secret|key|sig|auth)[^=&;#]*=)([^&;#]*)")
#: shorter values would mask ordinary words and digits everywhere
MIN_SECRET_LEN = 3


def mask_url(url: str | None) -> str | None:
    """``url`` with its password (and credential query values) replaced by ``***``."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    masked = url
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{MASK}@{hostport}"
        masked = url.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    elif not parts.netloc and "@" in url.split("?")[0]:  # not a URL we can read: show nothing
        return MASK
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, masked)


def url_secrets(url: str | None) -> list[str]:
    """The secret parts of ``url``: its password and credential query values."""
    if not url:
        return []
    found = [m.group(2) for m in _SECRET_PARAM.finditer(url) if m.group(2)]
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        user, sep, password = userinfo.partition(":")
        found.append(password if sep else user)
    return found


class Redactor:
    """Replaces every known secret value in a text by ``***``.

    >>> Redactor(["hunter22"])("login failed for password hunter22")
    'login failed for password ***'
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LEN:
                values.update({secret, quote(secret, safe=""), quote(secret, safe="@:")})
        # longest first, so a secret that contains another is masked whole
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))) if values else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: object) -> str:
        text = str(text)
        return self._pattern.sub(MASK, text) if self._pattern is not None else text


def install_log_redaction(redactor: Redactor) -> None:
    """Redact every log record made from now on (message, arguments and traceback).

    A record factory rather than a handler filter: it also covers handlers configured later
    (uvicorn's, Spark's Python loggers) and records that propagate from child loggers.
    """
    if not redactor:
        return
    previous = logging.getLogRecordFactory()
    inner = getattr(previous, "_simguard_inner", previous)

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return record
        record.msg, record.args = redactor(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor(record.exc_text)
        return record

    factory._simguard_inner = inner  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
