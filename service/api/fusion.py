"""SandboxFusion's `POST /run_code`, for Python (docs/design.md §10).

The wire is theirs (the `sandbox-fusion` client package and veRL's sandbox reward read it
unchanged): a request of `code`, `language`, `stdin`, `run_timeout`, `compile_timeout`,
`memory_limit_MB`, `files` and `fetch_files`; a response of `status` (Success / Failed /
SandboxError), `message`, `compile_result` and `run_result` (each with `status` Finished /
Error / TimeLimitExceeded, `execution_time` in seconds, `return_code`, `stdout`, `stderr`) and
`files`. What runs is ours: the program as a script in the same hardened sandboxes as every
other item, its outcome decided by the trusted side from observations (§9.2).

How our outcomes map onto theirs, as their own server reports them:

| outcome | status | run_result |
|---|---|---|
| exited 0 | Success | Finished, return_code 0 |
| exited n ≠ 0 | Failed | Finished, return_code n |
| killed by a signal s | Failed | Finished, return_code -s (as Python's subprocess reports it) |
| memory limit | Failed | Finished, its exit status, or -9 when the kernel killed it |
| output limit | Failed | Finished, return_code -9 (we killed it), the output up to the cap |
| timeout | Failed | TimeLimitExceeded, return_code null |
| syntax_error / unsafe (never ran) | Failed | null; compile_result Finished, 1, the reason |
| sandbox_error, an unsupported language, `files` or `fetch_files` | SandboxError | null |
"""

from __future__ import annotations

import signal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from azr_verify.service.models import RunResult, Verdict

SUPPORTED_LANGUAGES = ("python", "python3")
KILLED_RETURN_CODE = -int(signal.SIGKILL)


class RunStatus(StrEnum):
    SUCCESS = "Success"
    FAILED = "Failed"
    SANDBOX_ERROR = "SandboxError"


class CommandRunStatus(StrEnum):
    FINISHED = "Finished"
    ERROR = "Error"
    TIME_LIMIT_EXCEEDED = "TimeLimitExceeded"


class RunCodeRequest(BaseModel):
    """SandboxFusion's request; fields it does not know are ignored, as their server does."""

    model_config = ConfigDict(extra="ignore")

    code: str = Field(description="The program, run as `python program.py`.")
    language: str = Field(description="`python` (or `python3`). Any other language is "
                          "answered SandboxError: only Python runs here.")
    stdin: str | None = Field(None, description="The program's stdin.")
    run_timeout: float = Field(10, gt=0, description="Seconds (wall clock and CPU); lowered "
                               "to the server's max_timeout_s.")
    compile_timeout: float = Field(10, description="Unused: Python has no compile step.")
    memory_limit_MB: int = Field(-1, description="Address-space limit; -1 or 0: the server's "
                                 "default_memory_mb; lowered to max_memory_mb.")
    files: dict[str, str | None] = Field(default_factory=dict, description="Must be empty "
                                         "(null values are ignored, as SandboxFusion does): "
                                         "the sandbox filesystem is read-only and has no "
                                         "file channel; send data on stdin.")
    fetch_files: list[str] = Field(default_factory=list, description="Must be empty: a "
                                   "program here cannot write files.")


class CommandRunResult(BaseModel):
    status: CommandRunStatus
    execution_time: float | None = Field(None, description="Seconds.")
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None


class RunCodeResponse(BaseModel):
    status: RunStatus
    message: str = ""
    compile_result: CommandRunResult | None = None
    run_result: CommandRunResult | None = None
    executor_pod_name: str | None = None
    files: dict[str, str] = Field(default_factory=dict)


def unsupported(request: RunCodeRequest) -> str | None:
    """Why this service cannot run the request at all (answered SandboxError), or None."""
    if request.language not in SUPPORTED_LANGUAGES:
        return (f"language {request.language!r} is not supported by azr-verify: only python "
                f"runs here (as python3, in the hardened sandbox)")
    if any(content is not None for content in request.files.values()):
        return ("files are not supported: the sandbox filesystem is read-only and a program "
                "has no file channel; pass the data on stdin")
    if request.fetch_files:
        return ("fetch_files is not supported: a program cannot write files in the sandbox "
                "(read-only filesystem); print what you need to stdout")
    return None


def sandbox_error(message: str) -> RunCodeResponse:
    return RunCodeResponse(status=RunStatus.SANDBOX_ERROR, message=message)


def response_for(result: RunResult) -> RunCodeResponse:
    """SandboxFusion's response for one run (the table in the module docstring)."""
    verdict = result.verdict
    if verdict is Verdict.SANDBOX_ERROR:
        return sandbox_error(result.error or "the sandbox failed")
    if verdict in (Verdict.SYNTAX_ERROR, Verdict.UNSAFE):
        reason = result.error or verdict.value
        return RunCodeResponse(
            status=RunStatus.FAILED, message=reason,
            compile_result=CommandRunResult(status=CommandRunStatus.FINISHED,
                                            execution_time=0.0, return_code=1, stdout="",
                                            stderr=reason))
    seconds = round(result.duration_ms / 1000.0, 6)
    output: dict[str, Any] = {"execution_time": seconds, "stdout": result.stdout,
                              "stderr": result.stderr}
    if verdict is Verdict.TIMEOUT:
        run = CommandRunResult(status=CommandRunStatus.TIME_LIMIT_EXCEEDED, **output)
        return RunCodeResponse(status=RunStatus.FAILED, message=result.error or "",
                               run_result=run)
    code = _return_code(result)
    run = CommandRunResult(status=CommandRunStatus.FINISHED, return_code=code, **output)
    if verdict is Verdict.ACCEPTED:
        return RunCodeResponse(status=RunStatus.SUCCESS, run_result=run)
    return RunCodeResponse(status=RunStatus.FAILED, message=result.error or "", run_result=run)


def _return_code(result: RunResult) -> int:
    if result.exit_code is not None:
        return result.exit_code
    if result.error_type is not None and result.error_type.startswith("SIG"):
        try:
            return -int(signal.Signals[result.error_type])
        except KeyError:
            pass
    # Killed by the zygote (memory or output limit) or ended without a status of its own.
    return KILLED_RETURN_CODE
