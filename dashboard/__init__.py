"""Streamlit dashboard: app.py routes the pages in app_pages/; figures.py builds plotly figures (pure);
data.py is the cached access to the store."""
