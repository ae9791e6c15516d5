"""Per-run analyses over the store: wiring between ``db`` and the pure math in ``models``."""
