"""Secrets never leave the environment: URLs are shown, logged, stored and reported with their password masked.

``mask_url("postgresql://reader:s3cret@db/entropy")`` → ``postgresql://reader:***@db/entropy``;
``mask_secrets(text)`` does the same to every ``scheme://user:password@`` in free text (error messages, log
lines, tracebacks), to ``password=…``/``token=…`` query parameters, and to the values of the environment
variables that hold credentials. Pure functions of the standard library: every layer may use them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

# scheme://user:password@ — the password may hold '@' (unencoded), never whitespace or '/'
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)"
                       r"(?P<password>[^\s@/]*(?:@[^\s@/]*)*)@")
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|token|access_token|api_key|apikey|secret)=)"
                    r"(?P<value>[^&#\s'\"]+)", re.IGNORECASE)
_KEYWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<value>'[^']*'|[^\s'\"&;]+)", re.IGNORECASE)

#: environment variables whose values are credentials (their values are masked wherever they appear)
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "WANDB_API_KEY", "PGPASSWORD",
              "ENTROPY_DASH_WRITER_PASSWORD", "ENTROPY_DASH_READER_PASSWORD", "MLFLOW_DB_PASSWORD",
              "POSTGRES_PASSWORD")
#: environment variables holding URLs whose password is a credential
URL_ENV = ("ENTROPY_DASH_DB", "MLFLOW_TRACKING_URI", "MLFLOW_BACKEND_STORE_URI")


def _sub_password(m: re.Match) -> str:
    return f"{m['head']}{MASK}@" if m["password"] else m.group(0)


def mask_url(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@``, ``?password=…``) replaced by ``***``."""
    if not isinstance(url, str):
        return url
    return _QUERY.sub(lambda m: m["head"] + MASK, _USERINFO.sub(_sub_password, url))


def url_password(url: str) -> str | None:
    """The password in ``scheme://user:password@host`` (decoded), or None; ``***`` counts as none."""
    m = _USERINFO.search(url or "")
    if not m or not m["password"] or m["password"] == MASK:
        return None
    return unquote(m["password"])


def env_secrets(environ: os._Environ | dict | None = None) -> list[str]:
    """The credential values of the environment (secret variables, passwords of URL variables)."""
    env = os.environ if environ is None else environ
    values = [env.get(name) or "" for name in SECRET_ENV]
    values += [url_password(env.get(name) or "") or "" for name in URL_ENV]
    # a very short value would mask ordinary words; such a password is no secret anyway
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def mask_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every URL password, password/token parameter and known secret value masked;
    ``secrets`` defaults to the environment's (``env_secrets()``)."""
    if not isinstance(text, str) or not text:
        return text
    out = _USERINFO.sub(_sub_password, text)
    out = _QUERY.sub(lambda m: m["head"] + MASK, out)
    out = _KEYWORD.sub(lambda m: m["head"] + MASK, out)
    for value in env_secrets() if secrets is None else secrets:
        if value:
            out = out.replace(value, MASK)
    return out


class MaskingFilter(logging.Filter):
    """Masks every record passing through a handler: message, arguments, traceback and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = env_secrets()
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep the raw text, masked
            message = f"{record.msg} {record.args}"
        record.msg, record.args = mask_secrets(message, secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info, secrets)
        return True


def mask_logs(logger: logging.Logger | None = None) -> None:
    """Install ``MaskingFilter`` on every handler of ``logger`` (default: the root logger) and on
    logging's last-resort handler, once."""
    target = logger or logging.getLogger()
    for handler in [*target.handlers, logging.lastResort]:
        if handler is not None and not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
