"""The scheduler posts each new health finding at or above its webhook's level once, after the sync that found
it: a real `schedule --once` over the shared gsm8k+MATH TensorBoard run against an HTTP server on 127.0.0.1
(``Hook`` of tests/test_webhook.py), then the same schedule again (nothing new to post), then a webhook that
always fails (the sync still succeeds, the findings wait for the next sync, the URL's secret never logged)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from db import Store
from entropy_dash.cli import main
from entropy_dash.errors import ConfigError
from entropy_dash.schedule_config import load_config
from tests.test_webhook import SECRET, Hook

RUN = "verl-tensorboard/verl_grpo_example_gsm8k_math"


def _config(tmp_path: Path, folder: Path, url: str, level: str = "warn") -> Path:
    cfg = tmp_path / "sources.toml"
    cfg.write_text(f'[[source]]\nkind = "tensorboard"\nuri = "{folder}"\nevery = "1h"\n\n'
                   f'[webhook]\nurl = "{url}"\nlevel = "{level}"\n')
    return cfg


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def test_schedule_posts_new_findings_once(tmp_path, shared_data, hook, caplog) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = _config(tmp_path, shared_data / RUN, hook.url)
    caplog.set_level(logging.INFO)
    assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 0
    posted = [body for _, _, body in hook.requests]
    text = " ".join(b["text"] for b in posted)
    # the run's MATH score falls while the training reward rises, and most of its entropy is spent
    assert "reward_eval_divergence" in text or "divergence" in text.lower(), text
    assert "collapse" in text.lower(), text
    assert len(posted) >= 2
    store = Store.open(db)
    severities = {f["severity"] for r in store.analyses_frame("summary")["result"] for f in r.get("health") or []}
    assert severities & {"warn", "critical"}
    # the same schedule again: the findings were posted already
    n = len(hook.requests)
    assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 0
    assert len(hook.requests) == n
    assert SECRET not in caplog.text


def test_a_failing_webhook_never_fails_the_sync(tmp_path, shared_data, caplog) -> None:
    failing = Hook(statuses=(500,))
    try:
        db = f"sqlite:///{tmp_path / 'store.db'}"
        cfg = _config(tmp_path, shared_data / RUN, failing.url, level="critical")
        caplog.set_level(logging.INFO)
        assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 0
        assert failing.requests, "the webhook was never tried"
        assert SECRET not in caplog.text
        assert "webhook" in caplog.text and "500" in caplog.text
        with Store.open(db).engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT count(*) FROM webhook_sent")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM sync_log WHERE error IS NOT NULL")).scalar() == 0
    finally:
        failing.close()


def test_webhook_table_is_checked(tmp_path) -> None:
    cfg = tmp_path / "sources.toml"
    cfg.write_text('[[source]]\nkind = "file"\nuri = "x.csv"\nevery = "1h"\n\n[webhook]\nurl = "ftp://x/y"\n')
    with pytest.raises(ConfigError, match=r"\[webhook\], key 'url': must be an http\(s\) URL"):
        load_config(cfg)
    cfg.write_text('[[source]]\nkind = "file"\nuri = "x.csv"\nevery = "1h"\nwebhook = 3\n')
    with pytest.raises(ConfigError):
        load_config(cfg)
    cfg.write_text('[[source]]\nkind = "file"\nuri = "x.csv"\nevery = "1h"\n\n[webhook]\nlevel = "loud"\n'
                   'url = "http://127.0.0.1:9/x"\n')
    with pytest.raises(ConfigError, match="level"):
        load_config(cfg)
