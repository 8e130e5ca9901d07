"""Data readers and input pipelines."""


class DataError(Exception):
    """A problem with the user's data, reported as one line that says what to do."""
