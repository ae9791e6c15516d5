"""Sources: configured sources, their last sync, stored points and errors from sync_log; "sync now" runs the
CLI's ingest for a source in a subprocess and shows its outcome."""

from __future__ import annotations

import streamlit as st

from dashboard import data
from dashboard.sync_command import ingest_command, run_sync
from dashboard.tables import sources_table, sync_log_table

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
        runs = data.runs(url, version)
        keys = data.run_keys(url, version)
        log = data.sync_log(url)
        st.dataframe(sources_table(srcs, runs, keys, log), hide_index=True, key="sources_table")
        errors = log[log["status"] == "error"] if not log.empty else log
        if len(errors):
            st.warning(f"{len(errors)} of the last {len(log)} syncs failed; their errors are in the log below.")

        st.subheader("Sync now")
        by_id = {int(s.id): s for s in srcs.itertuples(index=False)}
        sid = st.selectbox("source", list(by_id), format_func=lambda i: f"#{i} {by_id[i].kind} {by_id[i].uri}",
                           key="sync_source")
        src = by_id[sid]
        cmd = ingest_command(src.kind, src.uri, src.options, url)
        st.code(" ".join(cmd), language="bash")
        if st.button("sync now", key="sync_now", type="primary"):
            with st.spinner(f"running entropy-dash ingest {src.kind} …"):
                outcome = run_sync(src.kind, src.uri, src.options, url)
            st.session_state["sync_outcome"] = outcome
        outcome = st.session_state.get("sync_outcome")
        if outcome is not None:
            if outcome.ok:
                st.success(f"sync finished in {outcome.seconds:.1f} s (exit 0)")
            else:
                st.error(f"sync failed (exit {outcome.returncode}) after {outcome.seconds:.1f} s; its output is below")
            text = (outcome.stdout.strip() + "\n" + outcome.stderr.strip()).strip()
            if text:
                st.code(text[-6000:], language=None)

        st.subheader("Sync log")
        st.dataframe(sync_log_table(log), hide_index=True, key="sync_log_table")
