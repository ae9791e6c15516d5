"""Reports on ceiling predictions: self-contained HTML, Markdown and JSON (no UI)."""
