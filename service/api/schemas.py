"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from azr_verify.service.models import (
    CheckItem,
    CheckResult,
    JobState,
    PolicyName,
    TestcaseItem,
    TestcaseResult,
)
from azr_verify.service.stores.audit.records import AuditRecord


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CheckItem] = Field(description="Triples to check; results come back in order.")
    policy: PolicyName = Field(PolicyName.AZR, description="Static safety policy.")


class CheckResponse(BaseModel):
    results: list[CheckResult]


class TestcaseRequest(BaseModel):
    __test__ = False
    model_config = ConfigDict(extra="forbid")

    items: list[TestcaseItem] = Field(description="Programs, each with its stdin/stdout "
                                      "test cases; results come back in order.")
    policy: PolicyName = Field(PolicyName.PERMISSIVE, description="Static safety policy. "
                               "permissive (the default here) refuses nothing and leaves the "
                               "program to the sandbox; azr refuses input(), sys and os, "
                               "which stdin programs need.")


class TestcaseResponse(BaseModel):
    __test__ = False
    results: list[TestcaseResult]


class JobCreated(BaseModel):
    job_id: str
    status: JobState


class AuditResponse(BaseModel):
    records: list[AuditRecord] = Field(description="Newest first, unless order=asc.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` (with the same order "
                                    "and filters) for the next page; null on the last page.")


class InfoResponse(BaseModel):
    version: str
    mode: str = Field(description="embedded or distributed")
    backend: str = Field(description="Sandbox backend: process or docker.")
    policies: list[str]
    limits: dict[str, Any]
    executors: dict[str, Any] = Field(default_factory=dict)


class HealthResponse(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable.")
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
