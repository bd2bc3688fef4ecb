"""The one exception type that user-facing commands turn into a one-line message."""


class LandscapeError(Exception):
    """Bad input or an unusable setting: CLIs print `error: <message>` and exit with 2."""
