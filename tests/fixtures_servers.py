"""Real servers for the test session (filled in by the walking skeleton)."""
