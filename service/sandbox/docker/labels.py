"""The labels every sandbox container carries: what it is, who owns it, which runner it holds."""

from __future__ import annotations

LABEL_SANDBOX = "azr-verify.sandbox"
LABEL_OWNER = "azr-verify.owner"
LABEL_OWNER_PROCESS = "azr-verify.owner-process"
LABEL_RUNNER = "azr-verify.runner-sha256"
