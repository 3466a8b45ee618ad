"""The one exception type that means "bad input": the CLI turns it into one stderr line and exit code 2."""

# the longest repr of a user's value that a message shows (a 30,000-character --set value is cut)
SHOW_MAX = 60
# the most names `all_keys` lists (a W&B export of thousands of runs would otherwise make a megabyte line)
MAX_KEYS_SHOWN = 400


class UsageError(Exception):
    """Bad input from the user (a file, a flag, a config key). Message is one line, shown as is."""


def cut(text: str, limit: int = SHOW_MAX) -> str:
    """`text` on one line, cut to `limit` characters (with '...' and the full length)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


def show(value, limit: int = SHOW_MAX) -> str:
    """`repr(value)` on one line, cut to `limit` characters (with '...' and the full length)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        text = f"<{type(value).__name__} too large to show>"
    return cut(text, limit)


def all_keys(keys) -> str:
    """The names found (columns, log keys) for a message: each cut to 80 characters, at most MAX_KEYS_SHOWN."""
    keys = list(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > MAX_KEYS_SHOWN else ""
    return (", ".join(cut(str(k), 80) for k in keys[:MAX_KEYS_SHOWN]) or "none") + more
