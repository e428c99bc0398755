"""The one exception type users see: its message is printed as a single line."""


class StylizeError(Exception):
    """Bad input or an unrecoverable condition, with a message meant for the user."""
