"""Analysis work split between processes on one PostgreSQL store: runs claimed row by row.

A worker claims a batch of the runs it was asked to analyse with ``SELECT … FOR NO KEY UPDATE SKIP LOCKED``
on their ``runs`` rows, in a transaction it keeps open while it analyses them and saves the results; the
commit releases the claim. Another worker skips the claimed rows (it never waits for them) and takes the
next ones; a run whose analysis is already current when it is claimed — another worker saved it and let go
— is not claimed again. So N workers split the work and no run is analysed twice for the same data.

``FOR NO KEY UPDATE`` (not ``FOR UPDATE``) lets the results be inserted meanwhile: the ``analyses`` rows'
foreign key takes only a key-share lock on the run. A sync that updates a claimed run waits for the batch
(at most ``lock_timeout``, the store's busy timeout), so batches are kept small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Engine, and_, select

from db import schema as t

#: runs per claimed batch by default: the claim (and a sync that needs one of its rows) lasts one batch's analysis
CLAIM_BATCH = 16


def claimed_batches(engine: Engine, run_ids: Sequence[int], *, kind: str, analysis_version: int,
                    force: bool = False, size: int = CLAIM_BATCH) -> Iterator[list[tuple[int, int]]]:
    """Batches of (run id, data version) claimed among ``run_ids``: only stale ones (analysis of ``kind``
    missing, older than the run's points or of another ``analysis_version``) unless ``force``. Each batch
    stays claimed until the next one is asked for (save its results first) or the iteration ends; a batch
    left by an exception is released unsaved."""
    ids = sorted({int(i) for i in run_ids})
    r, a = t.runs, t.analyses
    with engine.connect() as conn:
        while ids:
            q = (select(r.c.id, r.c.data_version)
                 .join(a, and_(a.c.run_id == r.c.id, a.c.kind == kind), isouter=True)
                 .where(r.c.id.in_(ids))
                 .order_by(r.c.id).limit(size)
                 .with_for_update(of=r, skip_locked=True, key_share=True))  # FOR NO KEY UPDATE OF runs
            if not force:
                q = q.where(a.c.id.is_(None) | (a.c.data_version != r.c.data_version)
                            | (a.c.analysis_version != analysis_version))
            with conn.begin():
                rows = [(int(i), int(v)) for i, v in conn.execute(q).all()]
                if not rows:
                    return
                yield rows
            claimed = {i for i, _ in rows}  # with force they stay "stale" to the query: not asked for again
            ids = [i for i in ids if i not in claimed]

