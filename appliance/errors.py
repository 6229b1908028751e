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
