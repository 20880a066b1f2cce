"""Use cases: each function is one thing a user or the engine does, in one transaction."""
