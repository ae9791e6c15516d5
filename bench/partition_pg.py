"""Benchmark: migration 0007 (the points table hash-partitioned on PostgreSQL) on a store of sweep size.

Run: ``python bench/partition_pg.py [--runs 100] [--pg-url postgresql+psycopg://USER@HOST/postgres]`` (a role
that may create databases; without ``--pg-url`` it starts a throw-away server from ``initdb``, as the tests
do, with ``fsync=off``). It writes the sweep-shaped CSVs of ``bench/scale.py`` (2,000 steps of nine per-step
keys and a validation score every 20 steps per run, cached in the same folder) and ingests them with
``entropy-dash ingest file --no-analyse`` twice, each into a fresh database: one created at head
(partitioned), one created at 0006 and stamped 0007 for the ingest (so it fills the plain table, as the
previous release did). On the latter it then times

1. a read of one run's points: ``Store.points`` (one key, the drawing path) and ``Store.series`` (every key),
   median over ``--reads`` runs (the same runs each time), on the plain table;
2. the upgrade to 0007 (rows moved into the 16 partitions), in process, and the same reads;
3. the downgrade back to one plain table, and the same reads again;

and prints one table with the points table's size (every partition and index: ``pg_partition_tree``). Only
the row count is checked; nothing else is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import CACHE, ENTROPY_DASH, ENV, KEYS, write_runs  # noqa: E402

# a partitioned parent has no storage of its own (its pg_total_relation_size is 0): its partitions are summed
SIZE = ("SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('metric_points') "
        "WHERE isleaf), pg_total_relation_size('metric_points'))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--reads", type=int, default=30)
    ap.add_argument("--pg-url", help="a PostgreSQL server's URL whose role may create databases (default: a server "
                    "of its own)")
    args = ap.parse_args()
    server = None
    url = args.pg_url
    if url is None:
        from tests.fixtures_servers import PostgresServer, _pg_bindir

        root = Path(tempfile.mkdtemp(prefix="entropy-dash-bench-pg-"))
        root.chmod(0o755)
        server = PostgresServer(root, _pg_bindir())
        server.start()
        url = server.url()
    try:
        run(url, args.runs, args.reads, lambda name: _create_database(url, f"bench_partitions_{name}"))
    finally:
        if server is not None:
            server.stop()


def run(url: str, n_runs: int, reads: int, make_db) -> None:
    from alembic import command

    from db import Store
    from db.engine import make_engine
    from db.migrate import alembic_config

    folder = CACHE / f"runs-{n_runs}"
    points = write_runs(folder, n_runs)
    fresh = make_db("fresh")  # partitioned from the start
    command.upgrade(alembic_config(make_engine(fresh)), "head")  # migrated before the ingest, as the other one
    ingest_parted = _ingest(folder, fresh)
    old = make_db("old")  # a plain table at 0006, filled by the same ingest
    cfg = alembic_config(make_engine(old))
    command.upgrade(cfg, "0006")
    command.stamp(cfg, "0007")  # so that the ingest finds the schema at head and does not migrate it
    ingest_plain = _ingest(folder, old)
    command.stamp(cfg, "0006")
    store = Store(make_engine(old))
    stored = store.count_points()
    with store.engine.connect() as conn:
        ids = [int(i) for i in conn.exec_driver_sql("SELECT id FROM runs ORDER BY id").scalars()]
    step = max(1, len(ids) // reads)
    sample = (ids[::step] * reads)[:reads]

    def size() -> float:
        with store.engine.connect() as conn:
            return int(conn.exec_driver_sql(SIZE).scalar_one()) / 1e6

    def reads_ms() -> tuple[float, float]:
        one = [_ms(lambda i=i: store.points(i, KEYS[0])) for i in sample]
        every = [_ms(lambda i=i: store.series([i])) for i in sample]
        return statistics.median(one), statistics.median(every)

    cfg = alembic_config(store.engine)
    plain = reads_ms(), size()
    t0 = time.perf_counter()
    command.upgrade(cfg, "0007")
    up = time.perf_counter() - t0
    store.engine.dispose()
    parted = reads_ms(), size()
    t0 = time.perf_counter()
    command.downgrade(cfg, "0006")
    down = time.perf_counter() - t0
    store.engine.dispose()
    plain2 = reads_ms(), size()
    assert store.count_points() == stored == points
    print(f"{n_runs} runs, {stored:,} points\n")
    print("| | plain table (0006) | partitioned (0007) |\n|---|---|---|")
    print(f"| `ingest file FOLDER --no-analyse` into a fresh store | {ingest_plain:.1f} s | {ingest_parted:.1f} s |")
    print(f"| migration | downgrade 0007 → 0006: {down:.1f} s | upgrade 0006 → 0007: {up:.1f} s "
          f"({stored / up:,.0f} points/s) |")
    print(f"| read `points(run, key)`: {KEYS[0]}, 2,000 points, median of {reads} | {plain[0][0]:.2f} ms "
          f"(after the downgrade {plain2[0][0]:.2f} ms) | {parted[0][0]:.2f} ms |")
    print(f"| read `series([run])`: every key, {stored // len(ids):,} points, median of {reads} | "
          f"{plain[0][1]:.1f} ms (after the downgrade {plain2[0][1]:.1f} ms) | {parted[0][1]:.1f} ms |")
    print(f"| points table on disk (heap + primary key) | {plain[1]:.0f} MB | {parted[1]:.0f} MB |")


def _ingest(folder: Path, url: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([ENTROPY_DASH, "-q", "ingest", "file", str(folder), "--no-analyse", "--db", url], env=ENV,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _create_database(url: str, name: str) -> str:
    """A fresh database ``name`` on the server of ``url`` (dropped first if a previous run left it)."""
    from sqlalchemy import create_engine, make_url

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


if __name__ == "__main__":
    main()
