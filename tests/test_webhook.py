"""Health findings posted to a webhook (``entropy_dash.webhook``), against a real HTTP server on 127.0.0.1
(``http.server`` in a thread) that answers as told: 200, 500s then 200, always 500, 400, 429 with a long
Retry-After; and against a port nothing listens on."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from db import Store
from entropy_dash.errors import ConfigError
from entropy_dash.webhook import (
    WebhookResult,
    mask_webhook_url,
    message,
    post_new_findings,
    webhook_settings,
)

SECRET = "/services/T0001/B0002/s3cretKeyXYZ"


def finding(detector: str, severity: str, sentence: str, **kw) -> dict:
    """A finding as ``models.health`` findings' ``to_dict()`` gives it."""
    return {"detector": detector, "severity": severity, "sentence": sentence, "evidence": kw.get("evidence", {}),
            "keys": kw.get("keys", []), "steps": kw.get("steps"), "advice": kw.get("advice", []),
            "references": kw.get("references", []), "benchmark": kw.get("benchmark"), "needs": kw.get("needs")}


COLLAPSE = finding(
    "entropy_collapse", "warn", "Entropy fell from 0.284 to 0.0454 (84% spent) by step 115 while the gsm8k score "
    "stopped improving.", evidence={"entropy_first": 0.284, "entropy_last": 0.0454, "spent_fraction": 0.84,
                                    "floor_step": None, "score_slope_per_100_steps": -0.0123},
    keys=["actor/entropy", "val-core/openai/gsm8k/acc/mean@1"], steps=[1, 134],
    advice=["Try clip-higher (a larger upper clip ratio) or Clip-Cov / KL-Cov to keep exploring.",
            "Stop at the best checkpoint (step 115) if the forecast gain is below 0.5 pt."],
    references=["Cui et al. 2025, The Entropy Mechanism of RL for Reasoning LMs"])
DIVERGENCE = finding(
    "reward_eval_divergence", "critical", "Training reward rose 0.62 → 0.81 over steps 60–134 while MATH-lighteval "
    "fell 0.547 → 0.516.", evidence={"train_slope": 0.0026, "eval_slope": -0.0004, "eval_best": 0.547},
    keys=["critic/score/mean", "val-core/DigitalLearningGmbH/MATH-lighteval/acc/mean@1"], steps=[60, 134],
    advice=["Check the reward function for exploitable shortcuts <on the train set> & compare samples."],
    benchmark="DigitalLearningGmbH/MATH-lighteval")
PLATEAU = finding("plateau", "info", "The best gsm8k score (0.893) was 19 steps ago.", evidence={"steps_since": 19})
SKIPPED = finding("advantage_collapse", "skipped", "Skipped: needs frac_reward_zero_std.",
                  needs="frac_reward_zero_std")


class Hook:
    """A webhook receiver on 127.0.0.1: answers with ``statuses`` in turn (the last one repeated)."""

    def __init__(self, statuses=(200,), headers=None):
        self.statuses, self.headers = list(statuses), dict(headers or {})
        self.requests: list[tuple[str, dict, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.requests.append((self.path, dict(self.headers), body))
                status = hook.statuses[min(len(hook.requests) - 1, len(hook.statuses) - 1)]
                self.send_response(status)
                for k, v in hook.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"invalid_payload" if status < 500 else b"boom")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_factory():
    hooks = []

    def make(*args, **kw):
        hooks.append(Hook(*args, **kw))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 's.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def run_ids(store: Store, n: int) -> list[int]:
    """``n`` real runs in the store (the sent table refers to them)."""
    from db.records import RunData, RunInfo, Series

    sid = store.source_id("file", "/logs")
    return [store.write_run(sid, RunData(RunInfo(f"/logs/run{i}.log", f"run{i}"),
                                         (Series.build("actor/entropy", [1], [0.3]),)), {}).run_id
            for i in range(n)]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:  # records the back-off instead of waiting it
        self.append(seconds)


def test_findings_at_or_above_the_level_are_posted_once_each(store, hook_factory):
    hook = hook_factory()
    a, b = run_ids(store, 2)
    findings = {a: ("gsm8k-math-grpo", [COLLAPSE, DIVERGENCE, PLATEAU, SKIPPED]), b: ("game2048", [PLATEAU])}
    res = post_new_findings(store, hook.url, "warn", findings)
    assert res == WebhookResult(sent=2, skipped_duplicates=0, failed=0, error=None) and res.ok
    assert [r[0] for r in hook.requests] == [SECRET, SECRET]
    assert hook.requests[0][1]["Content-Type"] == "application/json; charset=utf-8"
    body = hook.requests[0][2]
    assert set(body) == {"text", "blocks"}
    assert body["text"] == f"WARN entropy_collapse in run gsm8k-math-grpo (#{a}): {COLLAPSE['sentence']}"
    header, sentence, fields, advice, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": ":warning: WARN entropy_collapse",
                                                 "emoji": True}}
    assert sentence["text"] == {"type": "mrkdwn", "text": COLLAPSE["sentence"]}
    assert [f["text"] for f in fields["fields"]] == [
        f"*Run*\ngsm8k-math-grpo (#{a})", "*Steps*\n1–134", "*entropy_first*\n0.284", "*entropy_last*\n0.0454",
        "*spent_fraction*\n0.84", "*floor_step*\nnull", "*score_slope_per_100_steps*\n-0.0123"]
    assert advice["text"]["text"].startswith("*Do this*\n• Try clip-higher")
    assert context["elements"][0]["text"] == "keys: actor/entropy, val-core/openai/gsm8k/acc/mean@1"
    assert context["elements"][1]["text"].startswith("references: Cui et al. 2025")
    div = hook.requests[1][2]
    assert div["text"].startswith("CRITICAL reward_eval_divergence [DigitalLearningGmbH/MATH-lighteval] in run")
    assert div["blocks"][2]["fields"][1]["text"] == "*Benchmark*\nDigitalLearningGmbH/MATH-lighteval"
    assert "&lt;on the train set&gt; &amp; compare" in div["blocks"][3]["text"]["text"]  # mrkdwn escaped

    again = post_new_findings(store, hook.url, "warn", findings)
    assert again == WebhookResult(sent=0, skipped_duplicates=2) and len(hook.requests) == 2
    # the collapse turns critical: a new finding, posted once; info is posted when the level is info
    worse = {**COLLAPSE, "severity": "critical"}
    res = post_new_findings(store, hook.url, "info", {a: ("gsm8k-math-grpo", [worse, DIVERGENCE, PLATEAU])})
    assert (res.sent, res.skipped_duplicates) == (2, 1)
    assert [r[2]["text"].split(" in run")[0] for r in hook.requests[2:]] == ["CRITICAL entropy_collapse", "INFO plateau"]
    assert post_new_findings(store, hook.url, "critical", {b: ("game2048", [PLATEAU, SKIPPED])}) == WebhookResult()


def test_server_errors_are_retried_with_back_off_then_posted(tmp_path, hook_factory):
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    (a,) = run_ids(store, 1)
    hook = hook_factory([500, 503, 200])
    sleeps = Sleeps()
    res = post_new_findings(store, hook.url, "warn", {a: ("r", [COLLAPSE])}, sleep=sleeps)
    assert res == WebhookResult(sent=1) and len(hook.requests) == 3 and sleeps == [0.5, 1.0]
    assert post_new_findings(store, hook.url, "warn", {a: ("r", [COLLAPSE])}, sleep=sleeps).skipped_duplicates == 1


def test_a_failing_webhook_never_raises_and_is_tried_again_later(tmp_path, hook_factory, caplog):
    caplog.set_level(logging.DEBUG)
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    (a,) = run_ids(store, 1)
    down = hook_factory([500])
    sleeps = Sleeps()
    res = post_new_findings(store, down.url, "warn", {a: ("r", [COLLAPSE, DIVERGENCE])}, sleep=sleeps)
    assert (res.sent, res.failed) == (0, 2)
    assert len(down.requests) == 4 and sleeps == [0.5, 1.0, 2.0]  # attempts bounded; the 2nd finding not tried
    port = down.server.server_port
    assert res.error == (f"webhook http://127.0.0.1:{port}/***: HTTP 500 Internal Server Error (boom) (after 4 "
                         "attempt(s)); 2 finding(s) not sent, tried again next time")
    # a client error is not retried
    bad = hook_factory([400])
    res = post_new_findings(store, bad.url, "warn", {a: ("r", [COLLAPSE])}, sleep=sleeps)
    assert res.failed == 1 and len(bad.requests) == 1 and "HTTP 400 Bad Request (invalid_payload)" in res.error
    # a Retry-After beyond the time limit: given up at once instead of waiting
    busy = hook_factory([429], headers={"Retry-After": "120"})
    res = post_new_findings(store, busy.url, "warn", {a: ("r", [COLLAPSE])}, sleep=sleeps, max_wait=30)
    assert len(busy.requests) == 1 and "HTTP 429" in res.error and "gave up after" in res.error
    assert sleeps == [0.5, 1.0, 2.0]
    # connection refused: a port nothing listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused = f"http://127.0.0.1:{closed}{SECRET}"
    res = post_new_findings(store, refused, "warn", {a: ("r", [COLLAPSE])}, sleep=sleeps, attempts=3)
    assert res.failed == 1 and "ConnectionRefusedError" in res.error and "(after 3 attempt(s))" in res.error
    # nothing was recorded as sent: a working webhook gets both findings
    up = hook_factory([200])
    assert post_new_findings(store, up.url, "warn", {a: ("r", [COLLAPSE, DIVERGENCE])}) == WebhookResult(sent=2)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 500" in logged and "attempt 2 of 4" in logged
    assert "s3cretKeyXYZ" not in logged and "s3cretKeyXYZ" not in repr(caplog.records)


def test_a_store_without_the_table_sends_nothing_and_says_why(tmp_path, hook_factory):
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    (a,) = run_ids(store, 1)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE webhook_sent")
    hook = hook_factory()
    res = post_new_findings(store, hook.url, "warn", {a: ("r", [COLLAPSE])})
    assert hook.requests == [] and res.failed == 1 and "cannot tell which findings were posted before" in res.error
    assert post_new_findings(store, hook.url, "loud", {a: ("r", [COLLAPSE])}).error.endswith(
        "level 'loud' is not one of info, warn, critical")


def test_settings_from_the_config_or_the_environment_and_the_url_masked():
    url = "https://hooks.slack.com/services/T0001/B0002/s3cretKeyXYZ"
    env = {"ENTROPY_DASH_WEBHOOK_URL": url}
    assert webhook_settings(None, environ={}) is None
    s = webhook_settings(None, environ=env)
    assert (s.url, s.level, s.origin) == (url, "warn", "environment")
    s = webhook_settings({"url": "http://127.0.0.1:9/x", "level": "critical"}, environ=env)
    assert (s.url, s.level, s.origin) == ("http://127.0.0.1:9/x", "critical", "config")
    assert "s3cret" not in repr(webhook_settings({}, environ=env))
    assert webhook_settings({"level": "info"}, environ=env).level == "info"
    with pytest.raises(ConfigError, match=r"sources\.toml, \[webhook\], key 'level': must be one of info, warn"):
        webhook_settings({"level": "warning"}, where="sources.toml", environ={})
    with pytest.raises(ConfigError, match=r"unknown key 'channel'"):
        webhook_settings({"url": url, "channel": "#rl"}, environ={})
    with pytest.raises(ConfigError, match=r"\$ENTROPY_DASH_WEBHOOK_URL: must be an http\(s\) URL, got \*\*\*$"):
        webhook_settings(None, environ={"ENTROPY_DASH_WEBHOOK_URL": "hooks.slack.com/services/T/B/s3cret"})
    assert mask_webhook_url(url) == "https://hooks.slack.com/***"
    assert mask_webhook_url("http://user:pw@127.0.0.1:8080/hook?token=abc") == "http://127.0.0.1:8080/***"


def test_message_of_a_finding_without_optional_parts():
    body = message(7, "run", finding("kl_drift", "warn", "KL rose to 0.12.", evidence={"kl_last": float("inf")}))
    assert body["text"] == "WARN kl_drift in run run (#7): KL rose to 0.12."
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section"]
    assert body["blocks"][2]["fields"][1]["text"] == "*kl_last*\ninf"
