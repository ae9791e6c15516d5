"""Streamlit entry point: `streamlit run dashboard/app.py` (or `entropy-dash dashboard`).

The store comes from $ENTROPY_DASH_DB (the CLI sets it from --db).
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

st.set_page_config(page_title="entropy-dashboard", page_icon="📉", layout="wide")
nav = st.navigation([
    st.Page(PAGES / "runs.py", title="Runs", icon="📋", url_path="runs", default=True),
    st.Page(PAGES / "ceiling.py", title="Ceiling", icon="📈", url_path="ceiling"),
])
nav.run()
