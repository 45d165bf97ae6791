"""Errors a user can act on: each names the problem and the fix."""

from __future__ import annotations


class AioError(Exception):
    """Base for every error aio raises on purpose."""


class ConfigError(AioError):
    """A config value is wrong: the message names the key, the value and what is allowed."""


class UnknownPluginError(AioError, KeyError):
    """A plugin name that nobody registered: the message lists those that exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataError(AioError):
    """Input data that cannot be used as is: the message names the file or rows."""


class ExportError(AioError):
    """A strategy that cannot be expressed in the requested output (e.g. Pine)."""
