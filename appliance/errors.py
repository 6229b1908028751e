"""Errors a user can cause. Each carries an HTTP status and a message that says what to do next."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of the appliance's own errors; the CLI prints them without a traceback."""

    status = 400
    title = "Bad request"


class NotFound(ApplianceError):
    status = 404
    title = "Not found"


class InvalidInput(ApplianceError):
    status = 422
    title = "Invalid input"


class PayloadTooLarge(ApplianceError):
    status = 413
    title = "Payload too large"


class Conflict(ApplianceError):
    status = 409
    title = "Conflict"


class NotReady(ApplianceError):
    status = 503
    title = "Not ready"


class Unauthorized(ApplianceError):
    status = 401
    title = "Unauthorized"


class Forbidden(ApplianceError):
    status = 403
    title = "Forbidden"


class RateLimited(ApplianceError):
    status = 429
    title = "Too many requests"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class NotAvailable(ApplianceError):
    status = 501
    title = "Not implemented"


class TrainingStopped(ApplianceError):
    status = 503
    title = "Training stopped"


class Unavailable(ApplianceError):
    """The other side is not there: a port another process listens on, an API that does not answer. Unlike the
    errors above, trying again later (or elsewhere) may work with the same input; the CLI exits 3 on it."""

    status = 503
    title = "Unavailable"
