"""Background work: the loops that follow the event log and the clock."""
