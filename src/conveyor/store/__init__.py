"""The store adapter: every SQL statement Conveyor runs lives in this package."""
