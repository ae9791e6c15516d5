"""Sources: configured sources, their runs, the points their syncs wrote, their last sync and errors, all from
the runs table and sync_log (never the points); "sync now" runs the
CLI's ingest for a source in the background and shows its progress and outcome (hidden when the store is
read-only for this dashboard)."""

from __future__ import annotations

import streamlit as st

from dashboard import data
from dashboard.sync_command import SyncJob, ingest_command, job, shown, start_sync
from dashboard.tables import sources_table, sync_log_table

READ_ONLY = ("This dashboard reads the store through a read-only connection, so it cannot sync sources itself. "
             "In this deployment syncing is done by the scheduler (`entropy-dash schedule --config sources.toml`; "
             "the compose file's `ingest` service), or by `entropy-dash ingest …` run with a database URL that may "
             "write.")


def sync_progress(source_id: int) -> None:
    current: SyncJob | None = job(source_id)
    if current is None:
        return
    outcome = current.poll()
    if outcome is None:
        st.info(f"sync of source #{source_id} running for {current.seconds:.0f} s …")
        tail = current.tail(1500)
        if tail:
            st.code(tail, language=None)
        return
    if outcome.ok:
        st.success(f"sync finished in {outcome.seconds:.1f} s (exit 0)")
    else:
        code = "timed out" if outcome.returncode is None else f"exit {outcome.returncode}"
        st.error(f"sync failed ({code}) after {outcome.seconds:.1f} s; its output is below")
    text = (outcome.stdout.strip() + "\n" + outcome.stderr.strip()).strip()
    if text:
        st.code(text[-6000:], language=None)
    seen = st.session_state.setdefault("sync_seen", set())
    if id(current) not in seen:  # the job just ended: redraw the whole page with the new data once
        seen.add(id(current))
        st.rerun()

st.title("Sources")
store = data.get_store()
if store is not None:
    url = data.db_url()
    version = data.version(store)
    srcs = data.sources(url, version)
    if srcs.empty:
        st.info("No sources configured yet. Add one with `entropy-dash ingest mlflow URI` (or `wandb`, "
                "`tensorboard`, `file`), or try `entropy-dash demo`; `entropy-dash schedule --config FILE` keeps "
                "them in sync.")
    else:
        log = data.sync_log(url)
        st.dataframe(sources_table(data.source_summary(url)), hide_index=True, key="sources_table")
        errors = log[log["status"] == "error"] if not log.empty else log
        if len(errors):
            st.warning(f"{len(errors)} of the last {len(log)} syncs failed; their errors are in the log below.")

        st.subheader("Sync now")
        if not data.is_writable():
            st.info(READ_ONLY)
        else:
            by_id = {int(s.id): s for s in srcs.itertuples(index=False)}
            sid = st.selectbox("source", list(by_id), format_func=lambda i: f"#{i} {by_id[i].kind} {by_id[i].uri}",
                               key="sync_source")
            src = by_id[sid]
            st.code(shown(ingest_command(src.kind, src.uri, src.options)), language="bash")
            st.caption("Runs in the background on this dashboard's store (`ENTROPY_DASH_DB` in its environment)"
                       + ("; the `***` password comes from `MLFLOW_TRACKING_PASSWORD` there." if ":***@" in src.uri
                          else "."))
            current = job(sid)
            running = current is not None and current.running
            if st.button("sync now", key="sync_now", type="primary", disabled=running):
                current = start_sync(sid, src.kind, src.uri, src.options, url)
                running = current.running
            if current is not None:
                # polled while it runs: the rest of the page stays usable; a full rerun shows the new data
                st.fragment(sync_progress, run_every=1.0 if running else None)(sid)

        st.subheader("Sync log")
        st.dataframe(sync_log_table(log), hide_index=True, key="sync_log_table")
