"""The `hulu-workstation` command line: one sub-command module per workflow (no Qt at import)."""
