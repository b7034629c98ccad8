"""The `azr-verify` command line: check, bench, serve, worker, audit, train."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from azr_verify.client.errors import AzrClientError
from azr_verify.service import __version__
from azr_verify.service.config import BackendName, Settings, default_data_dir
from azr_verify.service.errors import AzrVerifyError, ConfigError
from azr_verify.service.logs import configure_logging
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict

if TYPE_CHECKING:
    from azr_verify.service.stores.audit.query import AuditQuery

CHECK_EPILOG = """exit status: 0 when every line was checked; 1 when --fail-on names a verdict
that occurred; 2 when the check itself failed (sandbox, service or file unavailable).

examples:
  azr-verify check triples.jsonl -o results.jsonl
  azr-verify check triples.jsonl --url http://verifier:8000 --api-key "$KEY"
  azr-verify check triples.jsonl --summary --fail-on unsafe,sandbox_error"""

CHUNK = 256
EXIT_FAIL_ON = 1
EXIT_INFRASTRUCTURE = 2
_SHOWN_INPUT_CHARS = 40
TRIVIAL_WORKLOAD = "trivial"
AZR_STEP_WORKLOAD = "azr-step"


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "workers", None):
        overrides["workers"] = args.workers
    if getattr(args, "backend", None):
        overrides["sandbox"] = BackendName(args.backend)
    if getattr(args, "redis_url", None):
        overrides["redis_url"] = args.redis_url
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return load_settings(overrides)


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from AZR_VERIFY_* and flags; a bad value is a ConfigError naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_settings_error(exc, overrides)) from None
    except SettingsError as exc:  # a JSON-valued variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"AZR_VERIFY_{field.group(1).upper()}" if field else "a JSON setting"
        raise ConfigError(f"{name} is not valid JSON ({exc.__cause__}); write it as JSON, "
                          f"e.g. AZR_VERIFY_API_KEYS='{{\"name\": \"key\"}}'") from None


def describe_settings_error(exc: ValidationError, overrides: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if not error.get("loc"):
            problems.append(message)
            continue
        field = str(error["loc"][0])
        source = f"--{field.replace('_', '-')}" if field in overrides else \
            f"AZR_VERIFY_{field.upper()}"
        shown = repr(error.get("input"))
        if len(shown) > _SHOWN_INPUT_CHARS:
            shown = shown[:_SHOWN_INPUT_CHARS] + "..."
        problems.append(f"{source}={shown}: {message}")
    return "invalid setting " + "; ".join(problems) + " (fix or unset it; README.md lists " \
        "every setting)"


# -- check ------------------------------------------------------------------------------------


def _read_items(stream: IO[bytes]) -> Iterator[tuple[int, CheckItem | CheckResult]]:
    """Yields (line number, item) or (line number, a syntax_error result for a bad line).

    Whatever is wrong with one line (bytes that are not UTF-8, JSON nested deeper than the
    parser goes, a number too long to convert, fields that do not validate) is that line's
    syntax_error; the run goes on.
    """
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, _bad_line(number, f"not UTF-8 (byte {exc.start + 1} of the line)")
            continue
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _bad_line(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield number, _bad_line(number, "invalid JSON: nested too deeply")
            continue
        except ValueError as exc:  # e.g. an integer over int_max_str_digits
            yield number, _bad_line(number, f"invalid JSON: {str(exc)[:200]}")
            continue
        item_id = data.get("id") if isinstance(data, dict) else None
        item_id = item_id if isinstance(item_id, str | int) and not isinstance(item_id, bool) \
            else None
        try:
            yield number, CheckItem.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}"
                                 for e in exc.errors()[:5])
            yield number, _bad_line(number, problems, item_id)
        except (RecursionError, ValueError) as exc:
            yield number, _bad_line(number, f"cannot read the item: {str(exc)[:200]}", item_id)


def _bad_line(number: int, problem: str, item_id: str | int | None = None) -> CheckResult:
    return CheckResult(id=item_id, verdict=Verdict.SYNTAX_ERROR,
                       error=f"line {number}: {problem}")


class _LocalChecker:
    """Checks chunks on an engine started in this process."""

    def __init__(self, args: argparse.Namespace) -> None:
        from azr_verify.service.engine import Engine

        self.engine = Engine.start(_settings(args))
        self.policy = PolicyName(args.policy)

    def check(self, items: list[CheckItem]) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in self.engine.check(items, self.policy)]

    def close(self) -> None:
        self.engine.close()


class _RemoteChecker:
    """Sends chunks to a running service (`--url`) through the client."""

    def __init__(self, args: argparse.Namespace) -> None:
        from azr_verify.client import Client, ClientConfig

        config = ClientConfig.from_env(base_url=args.url, policy=args.policy,
                                       **({"api_key": args.api_key} if args.api_key else {}))
        self.client = Client(config=config)

    def check(self, items: list[CheckItem]) -> list[dict[str, Any]]:
        payload = [item.model_dump(mode="json", exclude_none=True) for item in items]
        return [r.model_dump(mode="json") for r in self.client.check(payload)]

    def close(self) -> None:
        self.client.close()


def _verdict_list(text: str) -> frozenset[Verdict]:
    """argparse type of --fail-on: comma-separated verdicts."""
    wanted = set()
    for name in filter(None, (part.strip() for part in text.split(","))):
        try:
            wanted.add(Verdict(name))
        except ValueError:
            names = ", ".join(v.value for v in Verdict)
            raise argparse.ArgumentTypeError(f"unknown verdict {name!r}; expected one or "
                                             f"more of: {names}") from None
    if not wanted:
        raise argparse.ArgumentTypeError("name at least one verdict")
    return frozenset(wanted)


def _check(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    with source:
        rows = list(_read_items(source))
    counts: Counter[str] = Counter()
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    bar = tqdm(total=len(rows), unit="triple", file=sys.stderr, disable=args.quiet or None,
               dynamic_ncols=True)
    checker = _RemoteChecker(args) if args.url else _LocalChecker(args)
    try:
        with out:
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start:start + CHUNK]
                items = [row for _, row in chunk if isinstance(row, CheckItem)]
                checked = iter(checker.check(items) if items else [])
                for _, row in chunk:
                    result = next(checked) if isinstance(row, CheckItem) \
                        else row.model_dump(mode="json")
                    counts[result["verdict"]] += 1
                    if not args.summary:
                        out.write(json.dumps(result, ensure_ascii=True,
                                             separators=(",", ":")) + "\n")
                bar.update(len(chunk))
            if args.summary:
                out.write(json.dumps({"triples": len(rows), "verdicts": dict(sorted(
                    counts.items()))}) + "\n")
    finally:
        bar.close()
        checker.close()
    summary = ", ".join(f"{verdict}={counts[verdict]}" for verdict in sorted(counts))
    print(f"{len(rows)} triples: {summary or 'none'}", file=sys.stderr)
    failing = sorted(v.value for v in args.fail_on or () if counts[v.value])
    if failing:
        print(f"azr-verify: failing verdicts present: {', '.join(failing)}", file=sys.stderr)
        return EXIT_FAIL_ON
    return 0


# -- bench ------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    if args.workload == AZR_STEP_WORKLOAD:
        if args.http or args.audit:
            raise SystemExit("azr-verify bench: --workload azr-step runs on its own "
                             "(not with --http or --audit)")
        from azr_verify.service.azr_step.workload import StepShape
        from azr_verify.service.bench.azr_step import run_azr_step_bench

        try:
            shape = StepShape(proposals_per_type=args.batch, solver_answers_per_type=args.batch)
        except ValueError as exc:
            raise SystemExit(f"azr-verify bench: --batch: {exc}") from None
        print(run_azr_step_bench(_settings(args), steps=args.steps, seed=args.seed,
                                 naive_helpers=args.naive_helpers, shape=shape))
        return 0
    if args.audit:
        from azr_verify.service.bench.audit import run_audit_bench

        print(run_audit_bench(records=args.records, rounds=args.rounds))
        return 0
    if args.trusted:
        from azr_verify.service.bench.trusted import run_trusted_bench

        print(run_trusted_bench(_settings(args), feed_mb=args.feed_mb,
                                report=lambda line: print(line, file=sys.stderr)))
        return 0
    if args.testcases:
        from azr_verify.service.bench.testcases import run_testcase_bench

        print(run_testcase_bench(_settings(args), programs=args.programs, cases=args.cases,
                                 baseline_cases=args.baseline_cases,
                                 report=lambda line: print(line, file=sys.stderr)))
        return 0
    if args.http:
        from azr_verify.service.bench.http import run_http_bench

        print(run_http_bench(_settings(args), triples=args.triples,
                             determinism_runs=args.determinism_runs, rounds=args.rounds))
        return 0
    from azr_verify.service.bench.engine import format_results, run_bench

    results = run_bench(_settings(args), args.triples, args.baseline_triples,
                        args.determinism_runs)
    print(format_results(results))
    return 0


# -- the rest is served by other layers; imported lazily so `check` stays light ---------------


def _serve(args: argparse.Namespace) -> int:
    from azr_verify.service.api.server import serve

    settings = _settings(args)
    host, port = args.host or settings.host, args.port or settings.port
    _check_can_listen(host, port)
    serve(settings, host=host, port=port)
    return 0


def _check_can_listen(host: str, port: int) -> None:
    """A busy port or a bad address, said before the sandbox pool starts (uvicorn would say
    it after)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                          "another --port / --host or stop what is using it") from None


def _worker(args: argparse.Namespace) -> int:
    from azr_verify.service.queue.worker import run_worker

    run_worker(_settings(args), burst=args.burst)
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    from azr_verify.service.stores.audit.export import export_records
    from azr_verify.service.stores.audit.query import AuditQuery, parse_verdict

    query = AuditQuery(verdict=parse_verdict(args.verdict), since=args.since, until=args.until,
                       rule=args.rule, text=args.search)
    settings = None if args.url else _settings(args)
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    with out:
        if settings is not None:
            count = export_records(settings, out, query, args.format)
            where = f"{Path(settings.data_dir).absolute()}" if not settings.redis_url \
                else "Redis"
        else:
            count = _export_over_http(args.url, args.api_key, query, args.format, out)
            where = args.url
    print(f"exported {count} audit records from {where}", file=sys.stderr)
    return 0


def _export_over_http(url: str, api_key: str | None, query: AuditQuery, fmt: str,
                      out: IO[str]) -> int:
    """The audit records the key may read, from a running service, oldest first (the
    service scopes them, as for every reader of `/v1/audit`)."""
    import os

    from azr_verify.client import Client
    from azr_verify.service.stores.audit.export import csv_lines, jsonl_lines
    from azr_verify.service.stores.audit.records import AuditRecord

    count = 0

    def records(client: Client) -> Iterator[AuditRecord]:
        nonlocal count
        for record in client.iter_audit(verdict=query.verdict, since=query.since,
                                        until=query.until, rule=query.rule, text=query.text):
            count += 1
            yield AuditRecord.model_validate(record.model_dump(mode="json"))

    try:
        with Client(url, api_key=api_key or os.environ.get("AZR_VERIFY_API_KEY")) as client:
            for line in (csv_lines if fmt == "csv" else jsonl_lines)(records(client)):
                out.write(line)
    except AzrClientError as exc:
        raise ConfigError(f"cannot read the audit log of {url}: {exc}") from None
    return count


def _train(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from azr_verify.trainer_adapter.cli import train_main

    return train_main(list(rest))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azr-verify",
        description="Sandboxed code-execution verifier for Absolute-Zero self-play training. "
                    "Settings come from AZR_VERIFY_* environment variables; flags override them.")
    parser.add_argument("--version", action="version", version=f"azr-verify {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def sandbox_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--workers", type=int, help="zygotes in the sandbox pool "
                         "(default: CPU count)")
        sub.add_argument("--backend", choices=[b.value for b in BackendName],
                         help="sandbox backend (default: process)")

    check = commands.add_parser(
        "check", help="check a JSONL file of triples (locally, or on a running service)",
        description="Reads one JSON object per line (id, program, input, output, entry, "
                    "determinism_runs, timeout_s, memory_mb) and writes one result per line, "
                    "in order. A malformed line gets a syntax_error result naming its line. "
                    "Without --url the triples run on sandboxes started by this command.",
        epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("input", help="JSONL file of triples, or - for stdin")
    check.add_argument("-o", "--output", help="where to write results (default: stdout)")
    check.add_argument("--policy", choices=[p.value for p in PolicyName],
                       default=PolicyName.AZR.value, help="static safety policy (default: azr)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    check.add_argument("--url", help="send the triples to the service at this URL instead of "
                       "running them here (e.g. http://127.0.0.1:8000)")
    check.add_argument("--api-key", help="API key for --url (default: AZR_VERIFY_API_KEY)")
    check.add_argument("--summary", action="store_true",
                       help="write one JSON line of counts per verdict instead of the results")
    check.add_argument("--fail-on", type=_verdict_list, metavar="VERDICT[,VERDICT...]",
                       help="exit with status 1 when any result has one of these verdicts")
    sandbox_flags(check)
    check.set_defaults(handler=_check)

    bench = commands.add_parser(
        "bench", help="engine triples/s against a naive and an in-process baseline",
        description="Measures the engine against a naive subprocess baseline and AZR's "
                    "in-process executor (default), the HTTP service "
                    "(--http), the audit log (--audit), or one AZR training step's "
                    "verification against AZR's in-process reference executor "
                    "(--workload azr-step). Every table has its baseline from the same run.")
    bench.add_argument("--workload", choices=[TRIVIAL_WORKLOAD, AZR_STEP_WORKLOAD],
                       default=TRIVIAL_WORKLOAD,
                       help="trivial: distinct `x * k + 1` programs (default); azr-step: 64 "
                            "proposals per task type, 8 learnability rollouts per valid "
                            "proposal and 64 solver answers per type, through the trainer's "
                            "verifier against a served instance, beside the reference executor")
    bench.add_argument("--steps", type=_positive_int, default=3,
                       help="measured steps (--workload azr-step; default 3)")
    bench.add_argument("--seed", type=int, default=0,
                       help="seed of the generated steps (--workload azr-step; default 0)")
    bench.add_argument("--batch", type=_positive_int, default=64,
                       help="proposals and solver answers per task type (--workload azr-step; "
                            "default 64, AZR's)")
    bench.add_argument("--naive-helpers", action="store_true",
                       help="also run each step with naive helpers (deduction answers "
                            "executed, answers at the default determinism runs, nothing "
                            "reused), to show the executions the AZR helpers save")
    bench.add_argument("--triples", type=int, default=4000, help="engine workload size")
    bench.add_argument("--baseline-triples", type=int, default=200,
                       help="baseline workload size (it is slow)")
    bench.add_argument("--determinism-runs", type=int, default=2)
    bench.add_argument("--http", action="store_true",
                       help="measure HTTP /v1/check (embedded and distributed) against the "
                            "engine instead of the engine against the naive baseline")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds (--http); "
                       "requests per view (--audit)")
    bench.add_argument("--audit", action="store_true",
                       help="time the audit console and /v1/audit on a large audit log "
                            "against full-scan baselines")
    bench.add_argument("--records", type=int, default=1_000_000,
                       help="audit records to fill the log with (--audit)")
    bench.add_argument("--trusted", action="store_true",
                       help="measure what hostile requests cost the service process: CPU per "
                            "100 KB, /healthz latency meanwhile, parser cost per shape, RSS "
                            "under a stream of large requests")
    bench.add_argument("--feed-mb", type=int, default=1024,
                       help="MiB of distinct requests fed for the RSS figure (--trusted)")
    bench.add_argument("--testcases", action="store_true",
                       help="stdin/stdout test cases per second: engine, HTTP /v1/testcases "
                            "and /run_code against one subprocess.run per case")
    bench.add_argument("--programs", type=int, default=200,
                       help="distinct programs (--testcases)")
    bench.add_argument("--cases", type=int, default=10, help="cases per program (--testcases)")
    bench.add_argument("--baseline-cases", type=int, default=200,
                       help="cases the slow baseline runs (--testcases)")
    sandbox_flags(bench)
    bench.set_defaults(handler=_bench)

    serve = commands.add_parser("serve", help="run the HTTP API (embedded mode unless "
                                "AZR_VERIFY_REDIS_URL is set)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--redis-url", help="distributed mode: queue work on this Redis")
    sandbox_flags(serve)
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run an RQ executor worker (distributed mode)")
    worker.add_argument("--redis-url", help="Redis URL (default: AZR_VERIFY_REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    sandbox_flags(worker)
    worker.set_defaults(handler=_worker)

    audit = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser(
        "export", help="write audit records as JSONL or CSV",
        description="Writes audit records (rejected items) as JSON lines or CSV, oldest first: "
                    "from the embedded-mode database in the data directory (read-only), from "
                    "Redis (--redis-url), or from a running service over HTTP (--url; an API "
                    "key reads only its own records, an admin key all of them).")
    export.add_argument("-o", "--output", help="file (default: stdout)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl",
                        help="output format (default: jsonl)")
    export.add_argument("--verdict", help="only this verdict")
    export.add_argument("--since", type=float, help="only records after this UNIX time")
    export.add_argument("--until", type=float, help="only records at or before this UNIX time")
    export.add_argument("--rule", help="only records with a violation of this policy rule")
    export.add_argument("--search", help="only records containing these words")
    export.add_argument("--data-dir", help=f"the service's data directory (default: "
                        f"AZR_VERIFY_DATA_DIR, else {default_data_dir()})")
    export.add_argument("--redis-url", help="read the distributed-mode audit log")
    export.add_argument("--url", help="read a running service's audit log over HTTP, "
                        "e.g. http://127.0.0.1:8000")
    export.add_argument("--api-key", help="API key for --url (default: AZR_VERIFY_API_KEY)")
    export.set_defaults(handler=_audit_export)

    train = commands.add_parser("train", help="run the AZR self-play loop against the service",
                                add_help=False)
    train.set_defaults(handler=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "train":
        return _train(argparse.Namespace(), argv[1:])
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except (AzrVerifyError, AzrClientError) as exc:
        print(f"azr-verify: error: {exc}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    except FileNotFoundError as exc:
        print(f"azr-verify: error: {exc.filename}: no such file", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    except OSError as exc:  # an unreadable input, an unwritable output, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"azr-verify: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
