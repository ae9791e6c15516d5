"""Streamlit entry point: `streamlit run dashboard/app.py` (or `entropy-dash dashboard`).

The store comes from $ENTROPY_DASH_DB (the CLI sets it from --db). The run selection made on the Runs page
carries over to the other pages (session state, mirrored in the URL as ``?runs=…``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts this file's folder on sys.path, not the project root
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAGES = Path(__file__).with_name("app_pages")

st.set_page_config(page_title="entropy-dashboard", page_icon=":material/trending_down:", layout="wide")


def _login_configured() -> bool:
    """Streamlit's OIDC login is configured: an ``[auth]`` table in .streamlit/secrets.toml."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


if _login_configured() and not st.user.get("is_logged_in", False):
    st.title("entropy-dashboard")
    st.write("Log in to see the runs.")
    st.button("Log in", on_click=st.login, type="primary", key="login")
    st.stop()
nav = st.navigation([
    st.Page(PAGES / "runs.py", title="Runs", icon=":material/table_rows:", url_path="runs", default=True),
    st.Page(PAGES / "collapse.py", title="Collapse", icon=":material/trending_down:", url_path="collapse"),
    st.Page(PAGES / "health.py", title="Health", icon=":material/health_and_safety:", url_path="health"),
    st.Page(PAGES / "groups.py", title="Groups", icon=":material/stacked_line_chart:", url_path="groups"),
    st.Page(PAGES / "ceiling.py", title="Ceiling", icon=":material/show_chart:", url_path="ceiling"),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(PAGES / "backtest.py", title="Backtest", icon=":material/query_stats:", url_path="backtest"),
    st.Page(PAGES / "sources.py", title="Sources", icon=":material/sync:", url_path="sources"),
])
nav.run()
