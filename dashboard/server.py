"""``python -m dashboard.server run APP [Streamlit options]``: Streamlit's own command line, in a process that
imports what the pages need in a background thread while the server starts.

Streamlit imports a page's modules only when the first browser asks for it; for this dashboard that is about a
second (pandas, SQLAlchemy, plotly, the store, the analysis payloads), paid by the first page after every
(re)start of the service. Imported here while the server starts and waits for its first connection, they are
ready once it has been up for a second or two (a page opened sooner waits for the rest). A module that fails
to import is left to fail again in the page, where its error is shown.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time

#: what the pages import, beside Streamlit itself: libraries and the layers below the dashboard …
LIBRARIES = ("numpy", "pandas", "sqlalchemy", "plotly.graph_objects", "plotly.subplots", "plotly.io", "db.store",
             "analysis.payloads", "analysis.pipeline", "plots.run_figures")
#: … and the dashboard's own modules, imported once Streamlit's runtime exists (their caches are declared
#: against it; before, Streamlit would warn that it has none)
PAGE_MODULES = ("dashboard.context", "dashboard.data", "dashboard.state", "dashboard.tables",
                "dashboard.collapse_figure", "dashboard.group_figures",
                "dashboard.compare_figures")


def preload(names: tuple[str, ...]) -> list[str]:
    """Import ``names``; returns those that could not be imported (the page reports why when it runs)."""
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - reported by the page that needs it, not here
            failed.append(name)
    return failed


def _preload_all(wait_s: float = 60.0) -> None:
    preload(LIBRARIES)
    from streamlit import runtime

    deadline = time.monotonic() + wait_s
    while not runtime.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if runtime.exists():
        preload(PAGE_MODULES)


def main() -> None:
    # Streamlit (and with it pandas and plotly) is imported before the preload thread starts: two threads
    # importing pandas at once can hand one of them a half-initialised module (seen once: the server exited
    # with "partially initialized module 'pandas' has no attribute 'Series'")
    from streamlit.web.cli import main as streamlit_main

    threading.Thread(target=_preload_all, name="preload", daemon=True).start()

    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main()


if __name__ == "__main__":
    main()
