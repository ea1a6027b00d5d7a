"""Errors meant for the person at the keyboard: one line that says what is wrong and what to do."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or setup. The CLI prints it as one line and exits 2."""


class CollectionNotFound(UserError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection {name!r} does not exist; run `pixseek collections` to list them "
            f"or `pixseek ingest PATH --collection {name}` to create it"
        )
        self.name = name


class ServiceUnavailable(UserError):
    """A service pixseek relies on (Qdrant server, Redis) does not answer: likely to pass, so
    workers retry it and the API answers 503."""


class StoreBusy(ServiceUnavailable):
    """The embedded store is held open by another process."""


class JobNotFound(UserError):
    """No such job: never submitted to this broker, or its result expired."""
