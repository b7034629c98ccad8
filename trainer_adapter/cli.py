"""`azr-verify train`: argparse front end of `run_training`.

The service CLI wires this as a sub-command; `train_main(argv)` also works on its own:
``python -m azr_verify.trainer_adapter.cli --config trainer_adapter/configs/tiny-cpu.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True, help="YAML or JSON TrainConfig file.")
    service = parser.add_mutually_exclusive_group()
    service.add_argument("--service-url", help="Override service.url.")
    service.add_argument("--serve", action="store_true",
                         help="Start a private azr-verify service (embedded mode, bubblewrap "
                         "sandboxes) for this run and stop it at the end; needs the "
                         "`service` extra.")
    parser.add_argument("--api-key", help="Override service.api_key.")
    parser.add_argument("--steps", type=int, help="Override run.steps.")
    parser.add_argument("--out", help="Override run.out_dir (metrics, checkpoints, plot).")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.service_url:
        overrides["service.url"] = args.service_url
    if args.api_key:
        overrides["service.api_key"] = args.api_key
    if args.steps is not None:
        overrides["run.steps"] = args.steps
    if args.out:
        overrides["run.out_dir"] = args.out
    if args.no_progress:
        overrides["run.progress"] = False
    return overrides


def run_from_args(args: argparse.Namespace) -> int:
    # Imported here: the CLI module stays cheap to import (torch is heavy).
    import logging

    from azr_verify.client import AzrClientError

    from .config import ConfigLoadError, load_config
    from .local_service import LocalService, ServiceStartError
    from .runner import SeedRejectedError, run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        config = load_config(args.config, overrides_from_args(args))
    except ConfigLoadError as exc:
        print(f"azr-verify train: error: {exc}", file=sys.stderr)
        return 2
    service: LocalService | None = None
    try:
        if args.serve:
            service = LocalService(config.run.out_dir / "service")
            print(f"starting a local azr-verify service ({service.log_path})",
                  file=sys.stderr)
            url = service.start()
            config = config.model_copy(update={"service": config.service.model_copy(
                update={"url": url})})
        result = run_training(config)
    except (AzrClientError, SeedRejectedError, ServiceStartError) as exc:
        print(f"azr-verify train: {exc}", file=sys.stderr)
        return 1
    finally:
        if service is not None:
            service.stop()
    print(f"{result.steps} steps; metrics: {result.metrics_path}; plot: {result.plot_path}; "
          f"samples: {result.out_dir / 'samples.jsonl'}; checkpoint: {result.checkpoint}")
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    parser = add_train_arguments(argparse.ArgumentParser(
        prog="azr-verify train", description="Run the Absolute Zero loop against an "
        "azr-verify service."))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(train_main())
