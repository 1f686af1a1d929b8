"""The base of every error the command line reports as one line instead of a traceback."""


class Erc8004Error(Exception):
    """An expected failure with a message written for the person running the command."""
