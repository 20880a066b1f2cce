"""Pure domain: models and rules with no I/O and no clock."""
