"""Errors that carry their meaning: one line for the person, an HTTP status, an exit code.

Every error pixseek raises on purpose is a `PixseekError`. The CLI prints `pixseek: error: LINE`
(plus the hint, when there is one) and exits with `exit_code`; the API answers `http_status`
with `{"detail": LINE}`; workers retry exactly the `ServiceUnavailable` kind. Nothing else
re-maps errors by type or by message text.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PixseekError(Exception):
    """Base of every deliberate error: a one-line message that says what is wrong and what to do.

    `hint` is extra advice for the command line only (an API client gets the message alone);
    `api_message` words the same fault for HTTP clients where the message names CLI flags.
    """

    http_status: int = 422
    exit_code: int = 2

    def __init__(
        self, message: str = "", *, hint: str | None = None, api_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.hint = hint
        self._api_message = api_message

    @property
    def message(self) -> str:
        return first_line(self)

    @property
    def api_message(self) -> str:
        """The line for HTTP clients: the same, unless the CLI wording names command-line flags."""
        return self._api_message or self.message


class UserError(PixseekError):
    """A problem with the user's input or setup (HTTP 422, exit 2)."""


class InputError(UserError):
    """The request itself is wrong: a bad filter, query, option value or file (HTTP 422)."""


class TooLarge(UserError):
    """The request asks for more work than the configured bounds allow (HTTP 413)."""

    http_status = 413


class Forbidden(UserError):
    """The request names something it may not touch, such as a path outside the allowed roots."""

    http_status = 403


class NotFound(UserError):
    """The thing named does not exist (HTTP 404)."""

    http_status = 404


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection {name!r} does not exist; run `pixseek collections` to list them "
            f"or `pixseek ingest PATH --collection {name}` to create it",
            api_message=f"collection {name!r} does not exist; GET /collections lists them",
        )
        self.name = name


class JobNotFound(NotFound):
    """No such job: never submitted to this broker, or its result expired."""


class Conflict(UserError):
    """The request conflicts with the current state (an unfinished job's result; HTTP 409)."""

    http_status = 409


class CollectionExists(Conflict):
    """A collection of that name is already there (another process may have just created it)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection {name!r} already exists; ingest into it, or drop it first "
            f"(`pixseek collections drop {name}`)"
        )
        self.name = name


class Misconfigured(PixseekError):
    """The server's configuration cannot serve this (wrong model for a collection, a model that
    cannot load): not the client's fault, and not transient (HTTP 503, exit 2)."""

    http_status = 503


class ServiceUnavailable(PixseekError):
    """A service pixseek relies on (Qdrant server, Redis) does not answer: likely to pass, so
    workers retry it and the API answers 503."""

    http_status = 503


class StoreBusy(ServiceUnavailable):
    """The embedded store is held open by another process."""


class StoreCorrupt(PixseekError):
    """A collection's files on disk fail an integrity check (HTTP 503, exit 2): the message names
    the collection and the command that checks or repairs it."""

    http_status = 503


class DiskFull(PixseekError):
    """No space left on the device that holds the store or the cache (HTTP 507)."""

    http_status = 507
