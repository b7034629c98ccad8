"""The client's exception tree.

Everything the client raises derives from `AzrClientError`; httpx exceptions are wrapped at
the transport seam and never leak. What a *program* did is a `Verdict` in a result, never an
exception — except `sandbox_error`, which the AZR helpers raise as `SandboxFailure` because it
says nothing about the model and must never be scored as a wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import CheckResult, JobStatus


class AzrClientError(Exception):
    """Root of every error raised by azr_verify.client.

    Errors about a request name its method and URL in the message and in `url`.
    """

    url: str | None = None


class InvalidArgumentError(AzrClientError, ValueError):
    """An argument given to the client is not valid (an unknown verdict, a malformed
    hidden pair...); nothing was sent."""


class TransportError(AzrClientError):
    """The request did not complete: connection refused or reset, DNS, protocol error."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(f"{message} ({url})" if url else message)
        self.url = url


class RequestTimeoutError(TransportError):
    """No response within the configured timeout."""


class ProtocolError(AzrClientError):
    """The service answered with a body this client cannot understand."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(f"{message} ({url})" if url else message)
        self.url = url


class InvalidItemError(InvalidArgumentError):
    """An item given to the client does not fit the API's CheckItem shape; nothing was sent."""


class APIError(AzrClientError):
    """The service answered with an HTTP error status and a JSON error body."""

    def __init__(self, status: int, code: str, message: str, *, url: str | None = None
                 ) -> None:
        text = f"HTTP {status} {code}: {message}"
        super().__init__(f"{text} ({url})" if url else text)
        self.status = status
        self.code = code
        self.message = message
        self.url = url


class BadRequestError(APIError):
    """400/422: the request itself is wrong; retrying will not help."""


class AuthError(APIError):
    """401/403: missing or wrong API key."""


class NotFoundError(APIError):
    """404: e.g. an unknown job id."""


class PayloadTooLargeError(APIError):
    """413: body or item count over the server's limits."""


class RateLimitedError(APIError):
    """429: the service is overloaded; `retry_after_s` is what it asked us to wait."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after_s: float | None = None, *, url: str | None = None) -> None:
        super().__init__(status, code, message, url=url)
        self.retry_after_s = retry_after_s


class ServerError(APIError):
    """5xx other than 503."""


class ServiceUnavailableError(ServerError):
    """503: a dependency (pool, Redis) is down; usually transient."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after_s: float | None = None, *, url: str | None = None) -> None:
        super().__init__(status, code, message, url=url)
        self.retry_after_s = retry_after_s


class JobError(AzrClientError):
    """Base of asynchronous-job failures."""

    def __init__(self, message: str, job: JobStatus | None = None) -> None:
        super().__init__(message)
        self.job = job


class JobTimeoutError(JobError):
    """`wait()` gave up before the job reached a terminal state."""


class JobFailedError(JobError):
    """The service reports the job as failed."""


class SandboxFailure(AzrClientError):
    """The verifier's infrastructure failed on some items (verdict `sandbox_error`).

    Raised by the AZR helpers instead of folding the item into a wrong answer.
    """

    def __init__(self, message: str, results: Sequence[CheckResult] = ()) -> None:
        super().__init__(message)
        self.results = list(results)
