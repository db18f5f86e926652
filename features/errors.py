"""One base exception for the project; each area adds a one-line subclass.

The CLI turns any ``SimGuardError`` into a single line on stderr (what was wrong, what to do)
and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class SimGuardError(Exception):
    """Base for every error a user is meant to read."""

    #: exit status the CLI uses for this kind of error
    exit_code = 2


class ConfigError(SimGuardError):
    """A configuration file or environment override is invalid."""


class SchemaError(SimGuardError):
    """Input data does not match the canonical CDR contract."""


class MappingError(SimGuardError):
    """An operator mapping file is invalid or does not fit the input."""


class PlatformError(SimGuardError):
    """A platform component (Java, jars, Kafka, Spark, MLflow, database) is missing or down."""
