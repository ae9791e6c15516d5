"""Post new health findings to a webhook: a Slack-compatible JSON body, once per finding, retried with
back-off, never raising.

Settings — the ``[webhook]`` table of the scheduler's config, or the environment::

    [webhook]
    url = "https://hooks.slack.com/services/T000/B000/XXXX"   # else $ENTROPY_DASH_WEBHOOK_URL
    level = "warn"                                           # info | warn | critical (default warn)

A finding is a mapping with the keys of ``models.health`` findings (``detector``, ``severity``,
``sentence``, ``evidence``, ``keys``, ``steps``, ``advice``, ``references``, ``benchmark``, ``needs``).
``post_new_findings`` posts, one message each, the findings at or above ``level`` (``skipped`` and ``ok``
never) that were not posted before — (run id, detector, benchmark, severity) is remembered in the store
(``db.webhook_log``) once the webhook accepted the message (HTTP 2xx). A connection error, a timeout, HTTP
429 or 5xx is retried up to ``attempts`` times with exponential back-off (0.5 s, 1 s, 2 s …, at most
``max_wait`` seconds in all for one message); another HTTP error is not retried. After a message failed,
the rest of the call's messages are not tried (the webhook is down): they count as failed and are tried
again at the next call. Nothing is raised: the result says what was sent, skipped and failed, and why.

The URL is a secret (a Slack webhook's path is its key): it is shown, logged and put in errors as
``https://hooks.slack.com/***`` (``mask_webhook_url``). Requests go through the standard library
(``urllib.request``), which logs nothing, so no URL reaches a log at any level.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from db.limits import one_line
from db.masking import MASK, mask_secrets
from db.webhook_log import SentKey, mark_sent, sent_keys
from entropy_dash.errors import ConfigError

log = logging.getLogger(__name__)

ENV_URL = "ENTROPY_DASH_WEBHOOK_URL"
LEVELS = ("info", "warn", "critical")
SEVERITY_RANK = {"ok": 0, "info": 1, "warn": 2, "critical": 3}  # "skipped" has none: never posted
DEFAULT_LEVEL = "warn"
CONFIG_KEYS = {"url", "level"}
_ICON = {"info": ":information_source:", "warn": ":warning:", "critical": ":rotating_light:"}
_MAX_FIELDS = 10  # Slack: at most 10 fields in a section
_MAX_SECTION = 3000  # Slack: at most 3000 characters of section text
_MAX_HEADER = 150


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    level: str = DEFAULT_LEVEL
    origin: str = "config"  # config | environment

    def __repr__(self) -> str:  # never the URL
        return f"WebhookSettings(url={mask_webhook_url(self.url)!r}, level={self.level!r}, origin={self.origin!r})"


@dataclass(frozen=True)
class WebhookResult:
    """What one ``post_new_findings`` call did: messages accepted, findings not posted because they were
    posted before, findings not sent (tried and failed, or not tried after a failure), and the first error
    (URL masked)."""

    sent: int = 0
    skipped_duplicates: int = 0
    failed: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.error is None


def mask_webhook_url(url: str) -> str:
    """``scheme://host[:port]/***``: a webhook URL's path and query are its key, never shown."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    return f"{parts.scheme}://{host}{port}/{MASK}"


def _scrub(text: str, url: str) -> str:
    """``text`` with the URL, its path and its query masked (error messages of the HTTP stack quote them)."""
    parts = urlsplit(url)
    secrets = sorted({s for s in (url, url.rstrip("/"), parts.path + ("?" + parts.query if parts.query else ""),
                                  parts.path, parts.query, parts.password or "") if len(s) > 1},
                     key=len, reverse=True)
    out = text
    for s in secrets:
        out = out.replace(s, mask_webhook_url(url) if s.startswith(("http://", "https://")) else MASK)
    return mask_secrets(out)


def webhook_settings(table: Mapping[str, Any] | None, *, where: str = "config",
                     environ: Mapping[str, str] | None = None) -> WebhookSettings | None:
    """The webhook of a config's ``[webhook]`` table (``table``; None when the file has none), else of
    ``$ENTROPY_DASH_WEBHOOK_URL`` (level: the table's, else ``warn``); None when neither gives a URL.
    ``ConfigError`` naming ``where`` and the key for an unknown key, a bad level or a URL that is not http(s)."""
    env = os.environ if environ is None else environ
    table = dict(table or {})
    unknown = set(table) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{where}, [webhook]: unknown key {sorted(unknown)[0]!r} (expected url, level)")
    level = table.get("level", DEFAULT_LEVEL)
    if level not in LEVELS:
        raise ConfigError(f"{where}, [webhook], key 'level': must be one of {', '.join(LEVELS)}, got {level!r}")
    url, origin = table.get("url"), "config"
    if url is None and env.get(ENV_URL):
        url, origin = env[ENV_URL], "environment"
    if url is None:
        return None
    what = f"{where}, [webhook], key 'url'" if origin == "config" else f"${ENV_URL}"
    if not isinstance(url, str) or urlsplit(url.strip()).scheme not in ("http", "https") or not urlsplit(
            url.strip()).hostname:
        shown = mask_webhook_url(url) if isinstance(url, str) else type(url).__name__
        raise ConfigError(f"{what}: must be an http(s) URL, got {shown}")
    return WebhookSettings(url=url.strip(), level=level, origin=origin)


# ---------------------------------------------------------------------------------------------- body


def _escape(text: Any) -> str:
    """Slack mrkdwn: &, < and > escaped (the rest of the text is shown as written)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return one_line(json.dumps(v, default=str) if not isinstance(v, str) else v, 200)
    if isinstance(v, int):
        return str(v)
    return "NaN" if math.isnan(v) else f"{v:.4g}"


def _steps(steps: Any) -> str | None:
    if isinstance(steps, list | tuple) and len(steps) == 2:
        return f"{steps[0]}–{steps[1]}"
    return None


def message(run_id: int, run_name: str, finding: Mapping[str, Any]) -> dict[str, Any]:
    """The Slack-compatible body of one finding: ``text`` (the notification line; what receivers without
    blocks show) and ``blocks`` (header, sentence, run/benchmark/steps and evidence fields, advice, keys and
    references)."""
    severity = str(finding.get("severity"))
    detector = str(finding.get("detector"))
    sentence = str(finding.get("sentence") or "")
    bench = finding.get("benchmark")
    label = f"{severity.upper()} {detector}" + (f" [{bench}]" if bench else "")
    text = f"{label} in run {run_name} (#{run_id}): {sentence}"
    fields = [f"*Run*\n{_escape(run_name)} (#{run_id})"]
    if bench:
        fields.append(f"*Benchmark*\n{_escape(bench)}")
    span = _steps(finding.get("steps"))
    if span:
        fields.append(f"*Steps*\n{span}")
    evidence = finding.get("evidence") or {}
    for k, v in list(evidence.items())[: _MAX_FIELDS - len(fields)]:
        fields.append(f"*{_escape(k)}*\n{_escape(_number(v))}"[:2000])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{_ICON.get(severity, '')} {label}".strip()
                                    [:_MAX_HEADER], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(sentence)[:_MAX_SECTION] or "(no sentence)"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    advice = [str(a) for a in finding.get("advice") or []]
    if advice:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": ("*Do this*\n" + "\n".join(
            f"• {_escape(a)}" for a in advice))[:_MAX_SECTION]}})
    context = []
    keys = [str(k) for k in finding.get("keys") or []]
    if keys:
        context.append("keys: " + ", ".join(_escape(k) for k in keys))
    refs = [str(r) for r in finding.get("references") or []]
    if refs:
        context.append("references: " + "; ".join(_escape(r) for r in refs))
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": c[:_MAX_SECTION]}
                                                       for c in context]})
    return {"text": text, "blocks": blocks}


# ---------------------------------------------------------------------------------------------- posting


@dataclass(frozen=True)
class _Attempt:
    ok: bool
    retry: bool
    why: str
    wait: float | None = None  # the server's Retry-After, seconds


def _post_once(url: str, body: bytes, timeout: float) -> _Attempt:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json; charset=utf-8",
                                          "User-Agent": "entropy-dash"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked in settings
            resp.read(1 << 16)
            return _Attempt(True, False, f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        detail = one_line(exc.read(300).decode("utf-8", "replace"), 120) if exc.fp else ""
        why = f"HTTP {exc.code} {exc.reason}" + (f" ({detail})" if detail else "")
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        try:
            wait = float(retry_after) if retry_after is not None else None
        except ValueError:
            wait = None
        return _Attempt(False, exc.code == 429 or exc.code >= 500, why, wait)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _Attempt(False, True, f"{type(reason).__name__}: {reason}")


def _deliver(url: str, payload: Mapping[str, Any], *, attempts: int, backoff: float, max_wait: float,
             timeout: float, sleep: Callable[[float], None]) -> tuple[bool, int, str]:
    """Post one body with retries: (accepted, attempts made, last reason)."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
    started = time.monotonic()
    why = ""
    for i in range(1, attempts + 1):
        res = _post_once(url, body, timeout)
        if res.ok:
            return True, i, res.why
        why = res.why
        if not res.retry or i == attempts:
            return False, i, why
        wait = backoff * 2 ** (i - 1) if res.wait is None else max(res.wait, 0.0)
        if time.monotonic() - started + wait + timeout > max_wait:
            return False, i, f"{why}; gave up after {time.monotonic() - started:.1f} s (limit {max_wait:g} s)"
        log.info("webhook %s: %s; attempt %d of %d in %.1f s", mask_webhook_url(url), _scrub(why, url), i + 1,
                 attempts, wait)
        sleep(wait)
    return False, attempts, why


def _clean(value: Any) -> Any:
    """JSON-ready: NaN/inf → None (the body is strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def post_new_findings(store: Any, url: str, level: str,
                      findings_by_run: Mapping[int, tuple[str, Sequence[Mapping[str, Any]]]], *,
                      attempts: int = 4, backoff: float = 0.5, max_wait: float = 30.0, timeout: float = 10.0,
                      sleep: Callable[[float], None] = time.sleep) -> WebhookResult:
    """Post each finding of ``findings_by_run`` ({run id: (run name, findings)}) at or above ``level`` that
    was not posted before; never raises (see the module doc)."""
    masked = mask_webhook_url(url)
    if level not in LEVELS:
        return WebhookResult(error=f"webhook {masked}: level {level!r} is not one of {', '.join(LEVELS)}")
    todo: dict[SentKey, tuple[int, str, Mapping[str, Any]]] = {}
    for run_id, (run_name, findings) in findings_by_run.items():
        for f in findings:
            if SEVERITY_RANK.get(str(f.get("severity")), -1) >= SEVERITY_RANK[level]:
                key = (int(run_id), str(f.get("detector")), f.get("benchmark") or None, str(f.get("severity")))
                todo.setdefault(key, (int(run_id), str(run_name), f))
    if not todo:
        return WebhookResult()
    try:
        done = sent_keys(store, todo)
    except Exception as exc:  # noqa: BLE001 - a webhook never stops the caller
        return WebhookResult(failed=len(todo), error=one_line(
            f"webhook {masked}: cannot tell which findings were posted before ({type(exc).__name__}: "
            f"{_scrub(str(exc), url)}); nothing sent, {len(todo)} finding(s) tried again next time", 500))
    sent = failed = 0
    error = None
    for key, (run_id, run_name, finding) in todo.items():
        if key in done:
            continue
        if error is not None:  # the webhook failed on an earlier message: the rest waits for the next call
            failed += 1
            continue
        try:
            ok, tries, why = _deliver(url, _clean(message(run_id, run_name, finding)), attempts=attempts,
                                      backoff=backoff, max_wait=max_wait, timeout=timeout, sleep=sleep)
        except Exception as exc:  # noqa: BLE001 - a webhook never stops the caller
            ok, tries, why = False, 1, f"{type(exc).__name__}: {exc}"
        if not ok:
            failed += 1
            error = one_line(f"webhook {masked}: {_scrub(why, url)} (after {tries} attempt(s))", 500)
            continue
        try:
            mark_sent(store, [key])
        except Exception as exc:  # noqa: BLE001 - posted but not recorded: it may be posted again
            error = one_line(f"webhook {masked}: posted, but the store could not record it ({type(exc).__name__}: "
                             f"{_scrub(str(exc), url)}); it may be posted again", 500)
        sent += 1
    if error:
        error += f"; {failed} finding(s) not sent, tried again next time" if failed else ""
        log.warning("%s", error)
    result = WebhookResult(sent=sent, skipped_duplicates=len(done), failed=failed, error=error)
    if sent:
        log.info("webhook %s: %d finding(s) posted, %d posted before", masked, sent, len(done))
    return result
