"""The service's exception tree.

Domain outcomes (what the user's code did) are `Verdict` values, never exceptions. These
exceptions are for infrastructure failures: a sandbox that cannot start, a dead daemon, a queue
that is unreachable.
"""


class AzrVerifyError(Exception):
    """Root of every infrastructure failure raised by azr-verify."""


class ConfigError(AzrVerifyError):
    """The settings are inconsistent or name something that does not exist."""


class SandboxError(AzrVerifyError):
    """A sandbox could not be started or stopped answering."""


class SandboxUnavailableError(SandboxError):
    """A backend's prerequisite is missing (bubblewrap, dockerd, the sandbox image)."""


class ZygoteDiedError(SandboxError):
    """A fork-server died while it held requests."""


class PoolClosedError(SandboxError):
    """The sandbox pool was closed while work was submitted to it."""


class QueueError(AzrVerifyError):
    """The distributed job queue (Redis) failed."""


class QueueUnavailableError(QueueError):
    """Redis cannot be reached."""


class InvalidQueryError(AzrVerifyError):
    """An audit query is malformed (a cursor from elsewhere, a search with no words)."""


class OverloadedError(AzrVerifyError):
    """More work is queued than the configured depth allows; retry later."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JobNotFoundError(AzrVerifyError):
    """No job with that id is known."""


class QueueTimeoutError(QueueError):
    """The chunks of a batch were not all answered within the configured wait."""


class BatchLostError(QueueError):
    """Redis no longer holds a batch that was accepted (it restarted without persistence)."""
