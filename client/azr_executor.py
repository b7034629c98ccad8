"""`ServiceExecutor`: a drop-in for the executor of AZR's own trainer, backed by azr-verify.

The reference implementation (LeapLabTHU/Absolute-Zero-Reasoner, veRL + FSDP + Ray + vLLM)
calls a pluggable executor object, `PythonExecutor` in
`absolute_zero_reasoner/utils/code_utils/python_executor.py`, which `exec`s model-written code
in a local process pool. Switching to the sandboxed service is one import:

    from azr_verify.client.azr_executor import ServiceExecutor as PythonExecutor

The constructor accepts the reference's arguments (`timeout_length`, `ast_check`,
`max_workers`, ...) plus the service's (`url`, `api_key`, `policy`, ...; the URL defaults to
`AZR_VERIFY_URL`). Determinism runs follow the reference: `determinism_runs` (2) for
`check_all(check_determinism=True)`, `answer_determinism_runs` (1) for answer checks; a
predicted output is compared with the gold one by the service without running anything.
Method names, signatures and return conventions are the reference's:

- `check_all(code, inputs, banned_keywords, check_determinism, imports, check_error,
  banned_keywords_for_errors_and_exceptions) -> (bool, str | None)`: `(True, repr of the
  output)` when valid, `(False, "")` when not, `(False, None)` when a banned keyword or the
  service's policy refuses it; with `check_error`: `(True, "NoError" or the exception class)`;
- `eval_input_prediction(code, gold_output, agent_input, imports)` and
  `eval_output_prediction(code, gold_output, agent_output, imports)` -> 1.0 / 0.0 (None: the
  executor failed);
- `eval_k_input_prediction(code, gold_output, k_agent_inputs, imports)` and
  `eval_k_output_prediction(code, gold_output, k_agent_outputs, imports)` -> one 1.0 / 0.0
  per answer, in order, from **one request**;
- `apply(code)` / `batch_apply(codes)` -> `(str of the last expression's value, "Done")` or
  `("", "<ExceptionClass>: <message>")`; a batch is one request;
- `run_code(code, inputs, imports)` -> `(repr of f(inputs), status)`;
  `validate_code(code, inputs, imports)` -> bool;
- `cleanup()` closes the HTTP connections (reopened on next use, like the reference's pool).

Where the semantics differ, the service is the stricter, documented one (docs/design.md §2):
determinism is checked in separate processes with different hash seeds (not two calls in
one process); a value must be a literal (`not_literal` is invalid, where the reference accepted
any repr); equality of predicted outputs is decided by the service's literal parser, never by
`eval` (an answer that is an expression such as `[1] * 3` is wrong); outputs are never
truncated (the reference cuts them at 400 characters); imports the service's policy does not
allow are refused (`policy="permissive"` leaves that to the sandbox and `banned_keywords`); a
timeout in `check_error` mode is invalid rather than the "error" `Timeout Error`.

A `sandbox_error` (the verifier failed, not the program) is handled per `on_sandbox_error`:
`"reference"` (default) returns what the reference returns when its own executor fails
(`None` from `eval_*_prediction`, `(False, "error")` from `check_all`, an `Error:` status from
`apply`/`run_code`; `eval_k_*` raise, as the reference's assertion does) and counts it in
`sandbox_errors`; `"raise"` raises `SandboxFailure` everywhere.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from ._sync import Client
from .azr import ANSWER_DETERMINISM_RUNS
from .config import ClientConfig
from .errors import SandboxFailure
from .models import CheckItem, CheckResult, Verdict

log = logging.getLogger("azr_verify.client.azr_executor")

SandboxErrorMode = Literal["reference", "raise"]

APPLY_ENTRY = "azr_apply_result"
DONE = "Done"
NO_ERROR = "NoError"
ERROR = "error"
TIMEOUT_STATUS = "Timeout Error"

# Node types the reference's `banned_keywords_for_errors_and_exceptions` can name.
_ERROR_KEYWORD_NODES: dict[str, type[ast.AST]] = {
    "assert": ast.Assert, "raise": ast.Raise, "try": ast.Try, "except": ast.ExceptHandler,
}


def _as_list(values: Any) -> list[str]:
    """The reference passes numpy arrays as often as lists."""
    if values is None:
        return []
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [str(v) for v in values]


def with_imports(code: str, imports: Any) -> str:
    lines = _as_list(imports)
    return "\n".join(lines) + "\n" + code if lines else code


def contains_banned(code: str, banned_keywords: Iterable[str],
                    banned_for_errors: Iterable[str] = ()) -> bool:
    """True when an import names a banned module (any dotted part) or, with
    `banned_for_errors`, the code uses one of assert/raise/try/except. Unparseable code
    falls back to a whole-word search, as the reference does."""
    banned = [b for b in banned_keywords if b]
    error_nodes = tuple(node for key, node in _ERROR_KEYWORD_NODES.items()
                        if key in set(banned_for_errors))
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return any(re.search(rf"\b{re.escape(word)}\b", code) for word in banned)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [alias.name for alias in node.names]
        for name in names:
            if any(word in name.split(".") for word in banned):
                return True
        if error_nodes and isinstance(node, error_nodes):
            return True
    return False


def _status(result: CheckResult) -> str:
    """The reference's status: the last line of the traceback, e.g. `ValueError: bad`."""
    if result.verdict is Verdict.RUNTIME_ERROR:
        name = result.error_type or "Exception"
        return f"{name}: {result.error}" if result.error else name
    if result.verdict is Verdict.TIMEOUT:
        return TIMEOUT_STATUS
    detail = result.error or result.verdict.value
    return f"Error: {result.verdict.value}: {detail}"


def _str_of_value(output: str) -> str:
    """`str()` of the value whose repr the service returned: differs from the repr only for
    strings, whose repr is a (short, service-bounded) string literal."""
    if output[:1] in ("'", '"'):
        try:
            value = ast.literal_eval(output)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return output
        if isinstance(value, str):
            return value
    return output


def apply_program(code: str) -> str | None:
    """The snippet with its last expression returned by an entry function, or None when the
    snippet does not end with an expression (or does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    last = tree.body[-1]
    head = ast.unparse(ast.Module(body=tree.body[:-1], type_ignores=[]))
    return f"{head}\n\ndef {APPLY_ENTRY}():\n    return ({ast.unparse(last.value)})\n"


class ServiceExecutor:
    """AZR's executor interface over `POST /v1/check` (see the module docstring)."""

    def __init__(self, runtime: Any = None, get_answer_symbol: str | None = None,
                 get_answer_expr: str | None = None, get_answer_from_stdout: bool = False,
                 timeout_length: float = 10, ast_check: bool = False, max_workers: int = 1,
                 *, url: str | None = None, api_key: str | None = None,
                 client: Client | None = None, config: ClientConfig | None = None,
                 policy: str | None = None, on_sandbox_error: SandboxErrorMode = "reference",
                 determinism_runs: int = 2,
                 answer_determinism_runs: int = ANSWER_DETERMINISM_RUNS,
                 memory_mb: int | None = None) -> None:
        if runtime is not None or get_answer_symbol or get_answer_expr or \
                get_answer_from_stdout:
            raise ValueError("ServiceExecutor evaluates expressions only: runtime, "
                             "get_answer_symbol/expr and get_answer_from_stdout are not "
                             "supported (AZR's trainer does not use them)")
        if on_sandbox_error not in ("reference", "raise"):
            raise ValueError(f"on_sandbox_error must be 'reference' or 'raise', "
                             f"not {on_sandbox_error!r}")
        base = config or ClientConfig.from_env()
        updates: dict[str, Any] = {k: v for k, v in (("base_url", url), ("api_key", api_key),
                                                     ("policy", policy)) if v}
        self.config = base.model_copy(update=updates)
        self.timeout_length = timeout_length
        self.ast_check = ast_check  # the service always checks syntax
        self.max_workers = max_workers  # concurrency is the service's business
        self.on_sandbox_error = on_sandbox_error
        self.determinism_runs = determinism_runs  # check_all(check_determinism=True)
        self.answer_determinism_runs = answer_determinism_runs  # eval_*_prediction
        self.memory_mb = memory_mb
        self.sandbox_errors = 0
        self._client = client
        self._owns_client = client is None

    # -- plumbing ------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(config=self.config)
        return self._client

    def _item(self, program: str, inputs: str, output: str | None = None, *, runs: int = 1,
              entry: str = "f") -> CheckItem:
        return CheckItem(program=program, input=inputs, output=output, entry=entry,
                         determinism_runs=runs, timeout_s=float(self.timeout_length),
                         memory_mb=self.memory_mb, meta={"source": "azr_executor"})

    def _comparison(self, gold_output: str, agent_output: str) -> CheckItem:
        """Compared on the service's trusted side with its literal parser; nothing runs."""
        return CheckItem(input=gold_output, output=agent_output,
                         meta={"source": "azr_executor"})

    def _check(self, items: Sequence[CheckItem]) -> list[CheckResult]:
        return self.client.check(list(items), self.config.policy) if items else []

    def _sandbox_failed(self, results: Sequence[CheckResult], where: str) -> None:
        """Raise in `raise` mode; otherwise count and log."""
        if self.on_sandbox_error == "raise":
            raise SandboxFailure(f"{where}: the verifier failed", list(results))
        self.sandbox_errors += 1
        log.warning("%s: sandbox_error from the verifier (%d so far)", where,
                    self.sandbox_errors)

    # -- proposals -------------------------------------------------------------------------

    def check_all(self, code: str, inputs: str, banned_keywords: Sequence[str] = (),
                  check_determinism: bool = True, imports: Sequence[str] = (),
                  check_error: bool = False,
                  banned_keywords_for_errors_and_exceptions: Sequence[str] = (),
                  ) -> tuple[bool, str | None]:
        code = with_imports(code, imports)
        banned_errors = _as_list(banned_keywords_for_errors_and_exceptions) if check_error \
            else []
        if contains_banned(code, _as_list(banned_keywords), banned_errors):
            return False, None
        runs = self.determinism_runs if check_determinism else 1
        [result] = self._check([self._item(code, inputs, runs=runs)])
        verdict = result.verdict
        if verdict is Verdict.SANDBOX_ERROR:
            self._sandbox_failed([result], "check_all")
            return False, ERROR
        if verdict is Verdict.UNSAFE:
            return False, None  # the service's own banned list
        if check_error:
            if verdict in (Verdict.ACCEPTED, Verdict.NOT_LITERAL, Verdict.OUTPUT_LIMIT):
                return True, NO_ERROR
            if verdict is Verdict.RUNTIME_ERROR:
                return True, result.error_type or "Exception"
            if verdict is Verdict.MEMORY_LIMIT:
                return True, "MemoryError"
            return False, ERROR  # syntax, nondeterministic, timeout
        if verdict is Verdict.ACCEPTED:
            return True, result.output
        return False, ""

    def validate_code(self, code: str, inputs: str, imports: Sequence[str] = ()) -> bool:
        [result] = self._check([self._item(with_imports(code, imports), inputs)])
        if result.verdict is Verdict.SANDBOX_ERROR:
            self._sandbox_failed([result], "validate_code")
        return result.verdict is Verdict.ACCEPTED

    def run_code(self, code: str, inputs: str, imports: Sequence[str] = ()
                 ) -> tuple[str, str]:
        [result] = self._check([self._item(with_imports(code, imports), inputs)])
        if result.verdict is Verdict.SANDBOX_ERROR:
            self._sandbox_failed([result], "run_code")
        if result.verdict is Verdict.ACCEPTED and result.output is not None:
            return result.output, DONE
        return "", _status(result)

    # -- answers ---------------------------------------------------------------------------

    def _score(self, result: CheckResult, where: str) -> float | None:
        if result.verdict is Verdict.SANDBOX_ERROR:
            self._sandbox_failed([result], where)
            return None
        return 1.0 if result.verdict is Verdict.ACCEPTED else 0.0

    def eval_input_prediction(self, code: str, gold_output: str, agent_input: str,
                              imports: Sequence[str] = ()) -> float | None:
        """1.0 when `f(agent_input) == gold_output` (abduction)."""
        [result] = self._check([self._item(with_imports(code, imports), agent_input,
                                           gold_output, runs=self.answer_determinism_runs)])
        return self._score(result, "eval_input_prediction")

    def eval_output_prediction(self, code: str, gold_output: str, agent_output: str,
                               imports: Sequence[str] = ()) -> float | None:
        """1.0 when `agent_output` equals `gold_output` as a value (deduction). The program
        is not needed: the service parses and compares the two literals and runs nothing."""
        if agent_output.strip() and agent_output.strip() == gold_output.strip():
            return 1.0
        if not agent_output.strip():
            return 0.0
        [result] = self._check([self._comparison(gold_output, agent_output)])
        return self._score(result, "eval_output_prediction")

    def _k_scores(self, results: Sequence[CheckResult], where: str) -> list[float]:
        failed = [r for r in results if r.verdict is Verdict.SANDBOX_ERROR]
        if failed:
            # The reference asserts that its batch ran: a partial list would bias the mean.
            raise SandboxFailure(f"{where}: the verifier failed on {len(failed)} item(s)",
                                 failed)
        return [1.0 if r.verdict is Verdict.ACCEPTED else 0.0 for r in results]

    def eval_k_input_prediction(self, code: str, gold_output: str,
                                k_agent_inputs: Sequence[str],
                                imports: Sequence[str] = ()) -> list[float]:
        """One score per predicted input, in order, from one request."""
        program = with_imports(code, imports)
        answers = _as_list(k_agent_inputs)
        results = self._check([self._item(program, a, gold_output,
                                          runs=self.answer_determinism_runs)
                               for a in answers])
        return self._k_scores(results, "eval_k_input_prediction")

    def eval_k_output_prediction(self, code: str, gold_output: str,
                                 k_agent_outputs: Sequence[str],
                                 imports: Sequence[str] = ()) -> list[float]:
        """One score per predicted output, in order, from (at most) one request."""
        answers = _as_list(k_agent_outputs)
        scores: list[float | None] = []
        items = []
        for answer in answers:
            if not answer.strip():
                scores.append(0.0)
            elif answer.strip() == gold_output.strip():
                scores.append(1.0)
            else:
                scores.append(None)
                items.append(self._comparison(gold_output, answer))
        checked = iter(self._k_scores(self._check(items), "eval_k_output_prediction"))
        return [next(checked) if s is None else s for s in scores]

    # -- snippets --------------------------------------------------------------------------

    def batch_apply(self, batch_code: Sequence[str]) -> list[tuple[str, str]]:
        """Run snippets whose last line is an expression; `(str(value), "Done")` or
        `("", error status)` each, from one request."""
        programs = [apply_program(code) for code in batch_code]
        items = [self._item(p, "", entry=APPLY_ENTRY) for p in programs if p is not None]
        results = iter(self._check(items))
        out: list[tuple[str, str]] = []
        for program in programs:
            if program is None:
                out.append(("", "SyntaxError: the snippet must end with an expression"))
                continue
            result = next(results)
            if result.verdict is Verdict.SANDBOX_ERROR:
                self._sandbox_failed([result], "apply")
            if result.verdict is Verdict.ACCEPTED and result.output is not None:
                out.append((_str_of_value(result.output), DONE))
            else:
                out.append(("", _status(result)))
        return out

    def apply(self, code: str) -> tuple[str, str]:
        return self.batch_apply([code])[0]

    # -- lifecycle -------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Close the HTTP connections; the next call opens new ones (AZR calls this every
        few steps and keeps using the executor)."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def close(self) -> None:
        self.cleanup()

    def __enter__(self) -> ServiceExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
