"""Plotly figures and what they are drawn with, shared by the dashboard and the reports (which never import
each other): the per-run figures (``run_figures``), run colours, text made safe for plotly, and render-time
downsampling within a point budget. Pure: frames and stored results in, figures out (no Streamlit, no store)."""
