"""Writes (or, with --check, verifies) the Docker seccomp profile generated from policy.toml.

    python -m azr_verify.service.sandbox.seccomp sandbox_images/seccomp.json
    python -m azr_verify.service.sandbox.seccomp --check sandbox_images/seccomp.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from azr_verify.service.sandbox.seccomp.docker_profile import render_docker_profile
from azr_verify.service.sandbox.seccomp.policy import load_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azr_verify.service.sandbox.seccomp",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path, help="the Docker profile's path")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the file differs from the generated profile")
    arguments = parser.parse_args(argv)
    generated = render_docker_profile(load_policy())
    if arguments.check:
        current = arguments.profile.read_text() if arguments.profile.exists() else ""
        if current != generated:
            print(f"{arguments.profile} is out of date: run without --check", file=sys.stderr)
            return 1
        return 0
    arguments.profile.write_text(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
