"""The source registry (``ingest.registry``): a source registered by this test alone (no other file knows it)
is ingested through the command line and through a schedule config; every built-in kind's command line
round-trips; no list of source kinds lives outside the registry; offline W&B rows move to their own kind;
listing every kind (as each command line does) imports no source's readers."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from db import Store
from db.records import RunData, RunInfo, Series
from entropy_dash.cli import build_parser, main
from ingest import registry
from ingest.base import Source, Watermarks

ROOT = Path(__file__).resolve().parents[1]


class ToySource(Source):
    """A made-up source: ``toy:N`` is N runs following R = -0.3 e^H + 1.2, their entropy scaled by the
    ``scale`` option (an option of this kind only)."""

    kind = "toy"

    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        n = int(self.uri.split(":", 1)[1])
        scale = float(self.options.get("scale", 1.0))
        for i in range(n):
            steps = list(range(0, 50))
            h = [scale * (0.1 + 1.0 * math.exp(-s / 15)) for s in steps]
            acc = [-0.3 * math.exp(x) + 1.2 for x in h]
            yield RunData(run=RunInfo(external_id=f"toy-{i}", name=f"toy run {i}", project="toys",
                                      params={"trainer/total_training_steps": 50}),
                          series=(Series.build("actor/entropy", steps, h),
                                  Series.build("val-core/toy/acc/mean@1", steps[::5], acc[::5])))


def _scale(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return float(value)


def _check_toy_uri(uri: str) -> None:
    if not uri.startswith("toy:") or not uri[4:].isdigit():
        raise ValueError(f"toy URIs are toy:N, got {uri!r}")


TOY = registry.SourceKind(
    kind="toy", build=ToySource, help="made-up runs (a test's own source)", uri_help="toy:N, N runs",
    check_uri=_check_toy_uri,
    options=(registry.Option("scale", _scale, "entropy scale", flag="--scale", type=float, metavar="X"),))


@pytest.fixture
def toy_kind() -> Iterator[registry.SourceKind]:
    registry.register(TOY)
    yield TOY
    registry.unregister("toy")


def _runs(db: str, capsys: pytest.CaptureFixture) -> list[dict]:
    capsys.readouterr()
    assert main(["runs", "--json", "--db", db]) == 0
    doc = json.loads(capsys.readouterr().out)
    return doc["runs"] if isinstance(doc, dict) else doc


def test_a_registered_toy_source_ingests_through_the_cli(toy_kind, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["ingest", "toy", "toy:2", "--scale", "0.5", "--json", "--db", db]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["source"] == "toy toy:2" and summary["runs"] == 2 and summary["points"] == 2 * 60
    assert summary["analysed"] == 2  # the one workflow: sync, then the analyses of what changed
    runs = _runs(db, capsys)
    assert sorted(r["run"] for r in runs) == ["toy run 0", "toy run 1"]
    assert {(r["source"], r["source_kind"]) for r in runs} == {("toy toy:2", "toy")}
    store = Store.open(db)
    assert store.source_options("toy", "toy:2") == {"scale": 0.5}  # remembered with the source
    frame = store.runs_frame()
    assert set(frame["source_kind"]) == {"toy"}
    # its option reached the source: entropy at step 0 is scale * 1.1
    pts = store.points(int(frame["id"].iloc[0]), "actor/entropy")
    assert pts[0, 0] == 0 and pts[0, 1] == pytest.approx(0.55)
    # its URI check runs before anything is read, as a one-line error
    assert main(["ingest", "toy", "toys", "--db", db]) == 2
    assert "error: toy URIs are toy:N, got 'toys'" in capsys.readouterr().err


def test_a_registered_toy_source_ingests_through_a_schedule(toy_kind, tmp_path, capsys):
    cfg = tmp_path / "sources.toml"
    db = f"sqlite:///{tmp_path / 's.db'}"
    cfg.write_text('[[source]]\nkind = "toy"\nuri = "toy:3"\nscale = 2\nevery = "1m"\n')
    assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 0
    runs = _runs(db, capsys)
    assert len(runs) == 3 and {r["source"] for r in runs} == {"toy toy:3"}
    assert Store.open(db).source_options("toy", "toy:3") == {"scale": 2.0}
    # the kind's options are checked like every other key, naming the file, the source and the key
    cfg.write_text('[[source]]\nkind = "toy"\nuri = "toy:3"\nscale = -1\nevery = "1m"\n')
    assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 2
    assert f"error: {cfg}, source #1, key 'scale': must be a positive number, got -1" in capsys.readouterr().err
    cfg.write_text('[[source]]\nkind = "toy"\nuri = "toy:3"\nexperiments = ["a"]\nevery = "1m"\n')
    assert main(["schedule", "--config", str(cfg), "--once", "--db", db]) == 2
    assert "key 'experiments': unknown for a toy source" in capsys.readouterr().err


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError, match="'mlflow' is registered twice"):
        registry.register(registry.SourceKind(kind="mlflow", build=ToySource, help="", uri_help=""))
    assert registry.get("mlflow").build.__name__ == "MlflowSource"
    with pytest.raises(registry.UnknownSourceKind, match="unknown source kind 'neptune'; one of mlflow, wandb"):
        registry.get("neptune")


@pytest.mark.parametrize(("kind", "uri", "options"), [
    ("mlflow", "http://u:***@h:5000", {"experiments": ["e1", "e 2"], "all_keys": True}),
    ("mlflow", "sqlite:////x/mlflow.db", {"experiments": []}),
    ("wandb", "team/proj", {}),
    ("wandb-offline", "/runs/wandb", {}),
    ("tensorboard", "/tb", {}),
    ("file", "/logs/a.log", {}),
])
def test_the_dashboards_sync_command_parses_back_to_the_same_source(kind, uri, options):
    """``cli_args`` (what the Sources page runs) and ``from_cli`` (what the command reads) agree, kind by kind."""
    argv = registry.cli_args(kind, uri, options)
    assert argv[:2] == ["ingest", kind]
    args = build_parser().parse_args(argv)
    assert registry.from_cli(args) == (kind, uri, options)


def test_wandb_offline_keeps_its_old_spelling(tmp_path):
    args = build_parser().parse_args(["ingest", "wandb", "--offline", str(tmp_path)])
    assert registry.from_cli(args) == ("wandb-offline", str(tmp_path), {})
    for argv in (["ingest", "wandb"], ["ingest", "wandb", "a/b", "--offline", str(tmp_path)]):
        with pytest.raises(ValueError, match="takes ENTITY/PROJECT or --offline DIR"):
            registry.from_cli(build_parser().parse_args(argv))


def _string_collections(path: Path) -> Iterator[tuple[int, set[str]]]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            yield node.lineno, {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        elif isinstance(node, ast.Dict):
            yield node.lineno, {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def test_no_list_of_source_kinds_outside_the_registry():
    """A tuple, list, set or dict naming two or more kinds would be one more place to edit for a new source."""
    built_in = set(registry.kinds()) - {"toy"}
    found = []
    for pkg in ("entropy_dash", "ingest", "dashboard", "analysis", "reports", "db", "models"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for line, strings in _string_collections(path):
                if len(strings & built_in) >= 2:
                    found.append(f"{path.relative_to(ROOT)}:{line}")
    assert found == []


def test_the_check_finds_a_list_of_kinds(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('KINDS = ("mlflow", "file")\n')
    assert [s for _, s in _string_collections(bad)] == [{"mlflow", "file"}]


def test_the_migration_moves_offline_wandb_rows_to_their_own_kind(tmp_path):
    from alembic import command

    from db.engine import make_engine
    from db.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    command.upgrade(alembic_config(engine), "0003")  # a store as the previous release left it
    with engine.begin() as conn:
        for kind, uri in (("wandb", "/home/me/wandb"), ("wandb", "team/proj"), ("file", "/logs")):
            conn.execute(text("INSERT INTO sources (kind, uri, options, created_at) "
                              "VALUES (:k, :u, '{}', CURRENT_TIMESTAMP)"), {"k": kind, "u": uri})
    engine.dispose()
    store = Store.open(url)
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, uri FROM sources ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("wandb-offline", "/home/me/wandb"), ("wandb", "team/proj"),
                                        ("file", "/logs")]


def test_listing_every_kind_imports_no_sources_readers(tmp_path):
    """Every command line lists every kind (``ingest --help``, the scheduler's config check); the readers'
    packages (requests, protobuf, tensorboard, wandb, MLflow) are imported only by a source that reads — a
    re-sync of an unchanged file, all of whose work is start-up, imports none of them."""
    (tmp_path / "run.csv").write_text("step,actor/entropy,critic/score/mean\n" +
                                      "".join(f"{s},{1 - s / 10},{s / 10}\n" for s in range(1, 8)))
    db = f"sqlite:///{tmp_path / 's.db'}"
    heavy = ("requests", "google.protobuf", "tensorboard", "wandb", "mlflow", "ingest.mlflow_rest",
             "ingest.mlflow_sql", "ingest.tensorboard_events")
    code = ("import json, sys\nfrom entropy_dash.cli import main\nfrom ingest import registry\n"
            "code = main(sys.argv[1:])\n"
            f"print(json.dumps({{'code': code, 'kinds': list(registry.kinds()), "
            f"'imported': [m for m in {heavy!r} if m in sys.modules]}}), file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.run([sys.executable, "-c", code, "--db", db, "--quiet", "ingest", "file", str(tmp_path / "run.csv")],
                           capture_output=True, text=True, env=env, timeout=300) for _ in range(2)]
    first, again = (json.loads(r.stderr.strip().splitlines()[-1]) for r in runs)
    assert first["kinds"] == again["kinds"] == ["mlflow", "wandb", "wandb-offline", "tensorboard", "file"]
    assert first["code"] == again["code"] == 0 and again["imported"] == []
