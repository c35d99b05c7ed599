"""One exception tree for the whole system.

Every error a user or a client can see carries a stable ``code`` (snake case, part of
the protocol: see docs/protocol.md) and a human message. Third-party errors are
translated at the boundary with ``raise ... from err``.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

logger = logging.getLogger(__name__)


class VideoidError(Exception):
    """Root of every error videoid raises on purpose."""

    code = "internal_error"
    status = 500

    field: str | None = None
    """The form field at fault, when there is one (the page marks it)."""
    attempts_left: int | None = None
    """The attempts still left after this one (a wrong code, PIN or PUK; a refused
    photo), when they are counted: sent as a field, not only in the message."""

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        field: str | None = None,
        attempts_left: int | None = None,
    ) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        if code is not None:
            self.code = code
        if field is not None:
            self.field = field
        if attempts_left is not None:
            self.attempts_left = attempts_left

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        # keep the code when crossing a process boundary (the analysis pool)
        return (
            _rebuild,
            (type(self), self.message, self.code, self.field, self.attempts_left),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.attempts_left is not None:
            out["attempts_left"] = self.attempts_left
        return out


class ConfigError(VideoidError, ValueError):
    """The configuration is invalid."""

    code = "config_invalid"


class ValidationError(VideoidError, ValueError):
    """The request is malformed."""

    code = "invalid_request"
    status = 400


class RateLimited(VideoidError):
    """Too many requests; slow down."""

    code = "rate_limited"
    status = 429


class LoginThrottled(RateLimited):
    """Too many login attempts for this username or from this address; wait a moment."""

    code = "login_throttled"


class ServerBusy(VideoidError):
    """The server is busy; try again in a moment."""

    code = "server_busy"
    status = 503
    retry_after_seconds = 5
    """Sent as the answer's Retry-After header."""


class AnalysisUnavailable(ServerBusy):
    """The photo could not be analysed just now; please try again in a moment."""

    code = "analysis_unavailable"


class TokenUnavailable(ServerBusy):
    """The key store did not answer in time; try again in a moment."""

    code = "token_unavailable"


class AuthError(VideoidError):
    """Authentication failed."""

    code = "unauthorized"
    status = 401


class InvalidCredentials(AuthError):
    """Wrong username or password."""

    code = "invalid_credentials"


class Forbidden(AuthError):
    """Your role does not allow this."""

    code = "forbidden"
    status = 403


class InvitationError(AuthError):
    """The invitation link is not valid."""

    code = "invitation_invalid"


class InvitationExpired(InvitationError):
    """The invitation link has expired."""

    code = "invitation_expired"


class SessionError(VideoidError):
    """The identification session cannot do this."""

    code = "session_error"
    status = 409


class IllegalTransition(SessionError):
    """This step is not allowed in the session's current state."""

    code = "illegal_transition"


class SessionNotFound(SessionError):
    """No such session."""

    code = "session_not_found"
    status = 404


class SessionInUse(SessionError):
    """This session is already open in another tab or device."""

    code = "session_in_use"


class QueueError(VideoidError):
    """The waiting room cannot do this."""

    code = "queue_error"
    status = 409


class AlreadyTaken(QueueError):
    """This customer is already being handled by another operator."""

    code = "already_taken"


class NotAssigned(QueueError):
    """This customer is not assigned to you."""

    code = "not_assigned"


class MediaError(VideoidError):
    """The media connection failed."""

    code = "media_error"
    status = 400


class InvalidSdp(MediaError, ValueError):
    """The session description is malformed or unsupported."""

    code = "invalid_sdp"


class ProbeBusy(MediaError):
    """A connectivity test is already running for this session; try again in a moment."""

    code = "probe_busy"
    status = 409


class StorageError(VideoidError, OSError):
    """The database or file store failed."""

    code = "storage_error"


class StorageFull(StorageError):
    """The server's storage is full: what you just did was not saved. Please try again
    in a moment."""

    code = "storage_full"
    status = 507


_FULL = (
    "database or disk is full",
    "no space left on device",
    "could not extend file",
    "disk full",
)


def is_full(err: BaseException) -> bool:
    """True when ``err`` (or what caused it) says the disk or the database is full."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(sign in str(cause).lower() for sign in _FULL):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def for_client(err: BaseException, where: str) -> VideoidError:
    """What a client is told of ``err``: a :class:`VideoidError` as it is, except that a
    storage failure never carries its own text (SQL, parameters, paths) to the client;
    a full disk or database is ``storage_full`` (507); anything else nobody translated is
    ``internal_error``. Storage failures and untranslated errors are logged here (their
    type and traceback, not the database's message, which may quote personal data)."""
    if isinstance(err, VideoidError) and not isinstance(err, StorageError):
        return err
    if is_full(err):
        logger.error("%s: storage full (%s)", where, type(err).__name__)
        return StorageFull()
    if isinstance(err, StorageError):
        cause = err.__cause__
        logger.error("%s: storage error (%s)", where, type(cause or err).__name__)
        return StorageError("something went wrong saving or reading data on our side")
    logger.error("%s: failed (%s)", where, type(err).__name__, exc_info=err)
    return VideoidError("something went wrong on our side")


class ObjectNotFound(VideoidError, LookupError):
    """No such image, snapshot or file in this session (another session's id included)."""

    code = "object_not_found"
    status = 404


def _rebuild(
    cls: type[VideoidError],
    message: str,
    code: str,
    field: str | None = None,
    attempts_left: int | None = None,
) -> VideoidError:
    return cls(message, code=code, field=field, attempts_left=attempts_left)
