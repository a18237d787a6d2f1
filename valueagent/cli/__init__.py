"""The `valueagent` command line."""
