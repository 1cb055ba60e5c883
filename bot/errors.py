"""The bot's exceptions, each carrying the HTTP status and stable code it maps to.

    BotError
    ├── RequestInvalid         400  bad_request
    │   ├── PayloadInvalid     400  invalid_payload
    │   ├── MessageTooLong     400  message_too_long
    │   └── WebhookRejected    4xx  <reason>          (platform callbacks)
    ├── Unauthorized           401  unauthorized
    ├── NotFound               404  not_found
    ├── MethodNotAllowed       405  method_not_allowed
    ├── PayloadTooLarge        413  payload_too_large
    ├── UnsupportedMediaType   415  unsupported_media_type
    ├── RateLimited            429  rate_limited
    └── BackendError           5xx  (the model)
        ├── BackendBadResponse 502  model_bad_response
        ├── BackendUnavailable 503  model_unavailable
        └── BackendTimeout     504  model_timeout
    DependencyUnavailable      503  dependency_unavailable (Redis, queue)
    ConfigError                     (servicekit.errors; start-up only, never reaches HTTP)
"""

from __future__ import annotations

from typing import ClassVar

from servicekit.errors import ConfigError as ConfigError  # re-exported: the bot's start-up errors


class BotError(Exception):
    """Root of every error the bot raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")

    def headers(self) -> dict[str, str]:
        return {}


class RequestInvalid(BotError):
    status = 400
    code = "bad_request"


class PayloadInvalid(RequestInvalid):
    code = "invalid_payload"


class MessageTooLong(RequestInvalid):
    code = "message_too_long"


class WebhookRejected(RequestInvalid):
    """A platform callback that failed verification or decoding; `reason` is a metric label."""

    code = "webhook_rejected"

    def __init__(self, reason: str, message: str | None = None, status: int = 400) -> None:
        super().__init__(message or reason.replace("_", " "))
        self.reason = reason
        self.status_override = status


class Unauthorized(BotError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="botwatch"'}


class NotFound(BotError):
    status = 404
    code = "not_found"


class MethodNotAllowed(BotError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str | None = None, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class PayloadTooLarge(BotError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(BotError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(BotError):
    status = 429
    code = "rate_limited"


class BackendError(BotError):
    status = 502
    code = "model_error"

    def __init__(
        self, message: str | None = None, retry_after: float | None = None, *, retryable: bool = False,
        rate_limited: bool = False, blames_request: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable
        # The model answered "slow down" (429): it is up, so the message can wait for it.
        self.rate_limited = rate_limited
        # The endpoint refused this request (400, 413, 422): another endpoint would refuse it too,
        # and the endpoint itself is fine.
        self.blames_request = blames_request
        # Which configured model endpoint failed (its metric label), when there are several.
        self.backend: str | None = None

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class BackendBadResponse(BackendError):
    status = 502
    code = "model_bad_response"


class BackendUnavailable(BackendError):
    status = 503
    code = "model_unavailable"


class BackendTimeout(BackendError):
    status = 504
    code = "model_timeout"


class DependencyUnavailable(BotError):
    status = 503
    code = "dependency_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


def status_of(error: BotError) -> int:
    """The HTTP status for an error, honouring a per-instance override."""
    override = getattr(error, "status_override", None)
    return override if isinstance(override, int) else error.status
