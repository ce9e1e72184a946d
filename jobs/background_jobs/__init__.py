"""Background jobs: the base class and the built-in jobs."""
