"""Errors that the command line turns into exit code 2 with a clear message."""


class EvalkitError(Exception):
    """Bad input or usage: the message says what, where (file/key) and what to do.

    The CLI prints it without a traceback and exits with code 2.
    """


class AudioError(EvalkitError):
    """An audio file is missing, unreadable, empty, truncated or holds bad samples."""


class ConfigError(EvalkitError):
    """A YAML config, task file or manifest is malformed."""
