"""The one exception type for bad user input.

Anything the user can fix (a YAML key, a path, a flag value) raises `UsageError` with a one-line
message naming the key or file and what is allowed. The CLI prints it as `kdtune: error: ...` and
exits with status 2 before any work starts.
"""


class UsageError(ValueError):
    """Bad input from the user: the message is one line and names the key or file."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
