"""Domain exceptions. The API maps them to problem+json in one handler; activities to ApplicationError."""


class DomainError(Exception):
    """A business rule said no. `status` is the HTTP status the API answers with."""

    status = 422
    title = "Unprocessable request"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class InvalidTransition(Conflict):
    title = "Invalid state change"


class TemplateProblem(DomainError):
    title = "Template error"
