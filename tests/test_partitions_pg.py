"""The points table hash-partitioned on PostgreSQL (migration 0007), on the session's real server: a store
written at revision 0006 from the shared verl logs keeps every point, key, owner and grant through the upgrade
and back through the downgrade; points written after it land in their run's partition; reads of one run scan
one partition; a fresh store is partitioned and matches ``db.schema``; SQLite is left as it was."""

from __future__ import annotations

import json

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, make_url, text

import db.webhook_log  # noqa: F401  (its table is in db.schema.metadata)
from db import Store
from db.engine import make_engine
from db.migrate import alembic_config, current_revision, head_revision
from db.schema import compared, metadata
from entropy_dash.cli import main
from ingest.keys import resolve_roles
from ingest.verl_log import parse_verl_log

PARTITIONS = 16
POINTS = "SELECT run_id, key_id, step, value, wall_time FROM metric_points ORDER BY run_id, key_id, step"
CONSTRAINTS = ("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
               "WHERE conrelid = 'metric_points'::regclass ORDER BY conname")


def _rows(store: Store, sql: str) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _one(store: Store, sql: str):
    with store.engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def _partitions(store: Store) -> int:
    return _one(store, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'metric_points'::regclass")


def _kind(store: Store) -> str:
    return _one(store, "SELECT relkind FROM pg_class WHERE oid = 'metric_points'::regclass")


def _drift(store: Store) -> list:
    """What alembic's autogenerate would change to make the database match ``db.schema`` (empty: none)."""
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": compared})
        return compare_metadata(ctx, metadata)


def _each_run_in_its_partition(store: Store) -> dict[int, str]:
    """The partition holding each run's points, checked to be the one PostgreSQL's hash of the run id picks."""
    rows = _rows(store, "SELECT p.run_id, p.tableoid::regclass::text, count(*) FROM metric_points p "
                        "GROUP BY 1, 2 ORDER BY 1")
    where = {}
    for run_id, table, _ in rows:
        assert run_id not in where, f"run {run_id} is split over {where[run_id]} and {table}"
        where[run_id] = table
        remainder = int(table.removeprefix("metric_points_p"))
        assert _one(store, f"SELECT satisfies_hash_partition('metric_points'::regclass, {PARTITIONS}, {remainder}, "
                           f"{run_id}::integer)")
    return where


def _scanned(store: Store, where: str) -> list[str]:
    """The point tables a read of ``where`` scans, from its EXPLAIN."""
    with store.engine.connect() as conn:
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) SELECT step, value FROM metric_points WHERE {where}"))
        doc = plan.scalar_one()
    found: list[str] = []

    def walk(node: dict) -> None:
        if "Relation Name" in node:
            found.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk((doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"])
    return sorted(found)


def _psql(url: str):
    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True)


def test_a_store_at_0006_is_partitioned_by_the_upgrade_and_restored_by_the_downgrade(capsys, postgres_url,
                                                                                       verl_logs):
    engine = make_engine(postgres_url)
    command.upgrade(alembic_config(engine), "0006")  # a store as the previous release created it
    old = Store(engine)
    sid = old.source_id("file", "/written/at/0006")
    runs = [parse_verl_log(p) for p in verl_logs]
    old.write_runs(sid, [(r, resolve_roles(s.key for s in r.series)) for r in runs])  # COPY into the plain table
    before = _rows(old, POINTS)
    constraints = _rows(old, CONSTRAINTS)
    assert len(before) > 39_000 and len({r[0] for r in before}) == 3
    assert _kind(old) == "r" and _partitions(old) == 0
    role = "points_owner_" + make_url(postgres_url).database.rsplit("_", 1)[1]  # roles are per server
    with _psql(postgres_url) as pg:  # owned by the writers' role, readable by a reader, as deploy/ sets it up
        pg.execute(f'CREATE ROLE "{role}"')
        pg.execute(f'ALTER TABLE metric_points OWNER TO "{role}"')
        pg.execute(f'CREATE ROLE "r{role}"')
        pg.execute(f'GRANT SELECT ON metric_points TO "r{role}"')
    engine.dispose()

    store = Store.open(postgres_url)  # migrated by the superuser of the session's server
    assert current_revision(store.engine) == head_revision()
    assert _kind(store) == "p" and _partitions(store) == PARTITIONS
    assert _rows(store, POINTS) == before  # every point identical, NULLs (non-finite values) included
    assert _rows(store, CONSTRAINTS) == constraints
    assert _one(store, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'metric_points'::regclass") == role
    assert _one(store, f"SELECT has_table_privilege('r{role}', 'metric_points', 'SELECT')")
    assert _drift(store) == []
    first = _each_run_in_its_partition(store)
    assert len(first) == 3

    # an ingest after the upgrade: three more runs (a second source of the same files), written with COPY
    summary = json.loads(_cli(capsys, "ingest", "file", str(verl_logs[0].parent), "--db", postgres_url))
    assert summary["runs"] == 3 and summary["points"] == len(before)
    where = _each_run_in_its_partition(store)
    assert len(where) == 6 and len(set(where.values())) > 1  # spread over partitions by the hash of the run id
    assert store.count_points() == 2 * len(before)
    new_run = max(where)
    assert _scanned(store, f"run_id = {new_run}") == [where[new_run]]  # one partition read, not sixteen
    assert _scanned(store, "key_id = 1") == sorted(f"metric_points_p{i:02d}" for i in range(PARTITIONS))
    fits = json.loads(_cli(capsys, "fit", "--db", postgres_url))
    assert len(fits) == 6 and all(f["status"] == "ok" for f in fits)
    doctor = json.loads(_cli(capsys, "doctor", "--db", postgres_url, ok=(0, 1)))
    assert len(doctor["runs"]) == 6 and all(r["findings"] for r in doctor["runs"])
    gone = _one(store, f"SELECT count(*) FROM metric_points WHERE run_id = {new_run}")
    with store.engine.begin() as conn:  # the foreign key still cascades
        conn.execute(text(f"DELETE FROM runs WHERE id = {new_run}"))
    after = _rows(store, POINTS)
    assert gone > 0 and len(after) == 2 * len(before) - gone and all(r[0] != new_run for r in after)

    command.downgrade(alembic_config(store.engine), "0006")
    assert _kind(store) == "r" and _partitions(store) == 0
    assert not [t for t in inspect(store.engine).get_table_names() if t.startswith("metric_points_p")]
    assert _rows(store, POINTS) == after
    assert _rows(store, CONSTRAINTS) == constraints
    assert _one(store, f"SELECT has_table_privilege('r{role}', 'metric_points', 'SELECT')")
    with _psql(postgres_url) as pg:
        pg.execute("DROP OWNED BY " + ", ".join(f'"{r}"' for r in (role, "r" + role)))
        pg.execute(f'DROP ROLE "{role}"')
        pg.execute(f'DROP ROLE "r{role}"')


def test_a_fresh_store_is_partitioned_and_matches_the_schema(postgres_url, verl_logs):
    store = Store.open(postgres_url)
    assert _kind(store) == "p" and _partitions(store) == PARTITIONS
    assert _drift(store) == []
    sid = store.source_id("file", "/logs")
    run = parse_verl_log(verl_logs[0])
    store.write_run(sid, run, resolve_roles(s.key for s in run.series))  # the read-compare-upsert path
    assert store.count_points() == sum(len(s.steps) for s in run.series)
    assert len(_each_run_in_its_partition(store)) == 1


def test_sqlite_keeps_one_plain_points_table(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    assert current_revision(store.engine) == head_revision()
    assert [t for t in inspect(store.engine).get_table_names() if t.startswith("metric_points")] == ["metric_points"]


def _cli(capsys, *argv: str, ok: tuple[int, ...] = (0,)) -> str:
    capsys.readouterr()
    code = main([*argv, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code in ok, captured.err
    return captured.out
