"""What a registry call can fail with: the texts users read in denials and warnings."""

from __future__ import annotations


class RegistryError(Exception):
    """The registry answered, or failed to, in a way that stops a resolution.

    Its text is what users read: never the registry's own error text (that goes to the log).
    """


class NotFound(RegistryError):
    pass


class Unavailable(RegistryError):
    """The registry could not answer (down, timing out, 5xx, anything unexpected); caches may help.

    Its text is what users read in warnings and denials: which registry and what
    kind of failure, never the underlying exception's text (a driver error may
    quote a store URI with its password). That goes to the log, and stays on
    ``__cause__``.
    """

    def __init__(self, message: str, kind: str = "unavailable") -> None:
        super().__init__(message)
        # modelpin_registry_errors_total's label: timeout, connection, server_error, refused_credentials, ...
        self.kind = kind
