"""The dashboard as it was before the point budget, for ``bench/dashboard.py``: the Collapse page is today's
(``bench/naive/collapse_page.py`` on ``bench/naive/today.py``), the Ceiling page is the product's own."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "bench" / "naive"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

HERE = Path(__file__).parent
st.set_page_config(page_title="entropy-dashboard (naive)", layout="wide")
st.navigation([
    st.Page(ROOT / "dashboard" / "app_pages" / "runs.py", title="Runs", url_path="runs", default=True),
    st.Page(HERE / "collapse_page.py", title="Collapse", url_path="collapse"),
    st.Page(ROOT / "dashboard" / "app_pages" / "ceiling.py", title="Ceiling", url_path="ceiling"),
]).run()
