"""PostgreSQL: ``metric_points`` becomes a table partitioned by hash of ``run_id`` (16 partitions).

Several schedulers on different hosts write one PostgreSQL store at once. The points table is by far its
largest (about 18,000 rows per 2,000-step sweep run: 180 M rows at 10,000 runs). Nearly every statement on it
names one run (``WHERE run_id = …``: a run's new points, its read-compare-upsert, its levels, a page drawing
it), so the planner reads one partition's index, and the partitions split what a single table would
concentrate: new runs get increasing ids, so every writer of a plain table inserts at the right edge of one
primary-key B-tree, while here runs are spread over 16 of them; and VACUUM, ANALYZE and a reindex work on a
sixteenth of the points at a time. ``COPY`` into the parent routes each row to its partition.

Why 16: enough to spread the writers a store sees (a few schedulers, each writing one batch at a time) and
to keep each partition near 10 M rows at 10,000 runs, few enough that a statement naming no run (counting
every point, the per-key summary of all runs) plans and scans 16 tables, not hundreds. The number is fixed
here, not read from settings: a later migration can split a partition in two (detach it, attach two of
modulus 32) without moving the others' rows.

``metric_lod`` (the downsampled levels) stays one table: it holds about 16% as many rows as the points (none
at all for runs under about 1,000 steps), is read and written per run through its primary key already, and
partitioning it would double this migration's cost for little.

How (one transaction: an interrupted upgrade leaves the plain table as it was): the plain table is renamed,
the partitioned one is created with the same columns, its rows are copied with ``INSERT … SELECT``, then the
primary key and foreign keys are created with their names of before (building an index once over loaded rows
is cheaper than updating it row by row), the old table is dropped, and its owner and grants are given to the
new one. The table is locked for the duration: readers wait. The downgrade does the reverse into one plain
table. On SQLite nothing changes.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
from sqlalchemy import text

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PARTITIONS = 16
COLUMNS = "run_id integer NOT NULL, key_id integer NOT NULL, step bigint NOT NULL, value double precision, " \
          "wall_time double precision"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=False)


def _rebuild(*, partitioned: bool) -> None:
    """Replace ``metric_points`` by a partitioned (or a plain) table holding the same rows, keys, owner and
    grants."""
    conn = op.get_bind()
    owner, moved = conn.execute(text(
        "SELECT quote_ident(pg_get_userbyid(relowner)), pg_get_userbyid(relowner) <> current_user FROM pg_class "
        "WHERE oid = 'metric_points'::regclass")).one()
    grants = conn.execute(text(
        "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) "
        "END FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'metric_points'::regclass "
        "AND a.grantee <> c.relowner")).all()
    op.execute("ALTER TABLE metric_points RENAME TO metric_points_old")
    op.execute("ALTER TABLE metric_points_old RENAME CONSTRAINT metric_points_pkey TO metric_points_old_pkey")
    tables = ["metric_points"]
    if partitioned:
        op.execute(f"CREATE TABLE metric_points ({COLUMNS}) PARTITION BY HASH (run_id)")
        for i in range(PARTITIONS):
            tables.append(f"metric_points_p{i:02d}")
            op.execute(f"CREATE TABLE {tables[-1]} PARTITION OF metric_points "
                       f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})")
    else:
        op.execute(f"CREATE TABLE metric_points ({COLUMNS})")
    op.execute("INSERT INTO metric_points (run_id, key_id, step, value, wall_time) "
               "SELECT run_id, key_id, step, value, wall_time FROM metric_points_old")
    op.execute("ALTER TABLE metric_points ADD CONSTRAINT metric_points_pkey PRIMARY KEY (run_id, key_id, step)")
    op.execute("ALTER TABLE metric_points ADD CONSTRAINT metric_points_run_id_fkey FOREIGN KEY (run_id) "
               "REFERENCES runs (id) ON DELETE CASCADE")
    op.execute("ALTER TABLE metric_points ADD CONSTRAINT metric_points_key_id_fkey FOREIGN KEY (key_id) "
               "REFERENCES metric_keys (id)")
    op.execute("DROP TABLE metric_points_old")
    if moved:  # migrated by another role (e.g. a superuser): the tables stay the old owner's
        for table in tables:
            op.execute(f"ALTER TABLE {table} OWNER TO {owner}")
    for privilege, grantee in grants:
        op.execute(f"GRANT {privilege} ON metric_points TO {grantee}")
    op.execute("ANALYZE metric_points")
