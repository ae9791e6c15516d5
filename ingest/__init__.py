"""Sources → canonical records (``db.records``) → the store. One module per source, one interface."""
