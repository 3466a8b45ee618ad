"""The one exception type that means "bad input": the CLI turns it into one stderr line and exit code 2."""


class UsageError(Exception):
    """Bad input from the user (a file, a flag, a config key). Message is one line, shown as is."""
