"""The client's wire models agree with the service's OpenAPI schema.

The client is installable alone (httpx + pydantic), so it mirrors the service's models instead of
importing them; this test is what keeps the mirror true. Requests must match exactly (the
server forbids unknown fields, so any drift is a 422 in production); responses must carry the
same fields, and each field must accept every value the server's schema allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel

from azr_verify.client import config as client_config
from azr_verify.client import models as wire
from azr_verify.service.api.app import create_app
from azr_verify.service.config import Settings

REQUESTS: list[tuple[type[BaseModel], str]] = [(wire.CheckItem, "CheckItem")]
RESPONSES: list[tuple[type[BaseModel], str]] = [
    (wire.CheckResult, "CheckResult"),
    (wire.Violation, "Violation"),
    (wire.AppliedLimits, "Limits"),
    (wire.JobStatus, "JobStatusResponse"),
    (wire.JobProgress, "JobProgress"),
    (wire.AuditRecord, "AuditRecord"),
    (wire.ServiceInfo, "InfoResponse"),
    (wire.CheckResponse, "CheckResponse"),
    (wire.SubmitResponse, "JobCreated"),
    (wire.AuditResponse, "AuditResponse"),
    (wire.ErrorBody, "ErrorDetail"),
    (wire.ErrorEnvelope, "ErrorResponse"),
]
# A client model referring to another one means the server's counterpart.
SERVER_NAME = {model.__name__: name for model, name in REQUESTS + RESPONSES}
# Words only, never shape: what humans read may differ between the two sides.
_PROSE = {"title", "description", "default", "examples"}


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi")))
    schemas: dict[str, Any] = app.openapi()["components"]["schemas"]
    return schemas


def shape(schema: Any) -> Any:
    """The schema without prose, with every $ref reduced to the referenced model's name."""
    if isinstance(schema, Mapping):
        if "$ref" in schema:
            return {"ref": str(schema["$ref"]).rsplit("/", 1)[-1]}
        return {key: shape(value) for key, value in schema.items() if key not in _PROSE}
    if isinstance(schema, list):
        return [shape(value) for value in schema]
    return schema


def alternatives(schema: Any) -> list[Any]:
    return list(schema["anyOf"]) if isinstance(schema, Mapping) and "anyOf" in schema \
        else [schema]


def accepts(client: Any, server: Any) -> bool:
    """Every value the server's field schema allows is allowed by the client's."""
    if client == server:
        return True
    if isinstance(client, Mapping) and client.get("additionalProperties") is True \
            and client.get("type") == "object":
        return all(alternative.get("type") == "object" for alternative in alternatives(server))
    offered = alternatives(client)
    return all(alternative in offered for alternative in alternatives(server))


def client_properties(model: type[BaseModel]) -> dict[str, Any]:
    properties: dict[str, Any] = shape(model.model_json_schema())["properties"]
    return rename_refs(properties)


def rename_refs(schema: Any) -> Any:
    if isinstance(schema, dict):
        if set(schema) == {"ref"}:
            return {"ref": SERVER_NAME.get(schema["ref"], schema["ref"])}
        return {key: rename_refs(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [rename_refs(value) for value in schema]
    return schema


def server_properties(components: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = shape(components[name])["properties"]
    return properties


@pytest.mark.parametrize(("model", "name"), REQUESTS, ids=[n for _, n in REQUESTS])
def test_request_models_match_exactly(components: dict[str, Any], model: type[BaseModel],
                                      name: str) -> None:
    assert client_properties(model) == server_properties(components, name)
    assert set(model.model_json_schema().get("required", [])) == \
        set(components[name].get("required", []))
    assert model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(("model", "name"), RESPONSES, ids=[n for _, n in RESPONSES])
def test_response_models_carry_every_field(components: dict[str, Any],
                                           model: type[BaseModel], name: str) -> None:
    mine, theirs = client_properties(model), server_properties(components, name)
    assert set(mine) == set(theirs), f"{model.__name__} vs {name}"
    for field, server_schema in theirs.items():
        assert accepts(mine[field], server_schema), (name, field, mine[field], server_schema)


@pytest.mark.parametrize(("enum", "name"), [(wire.Verdict, "Verdict"),
                                            (wire.JobState, "JobState")])
def test_enums_have_the_same_members(components: dict[str, Any], enum: type[Any],
                                     name: str) -> None:
    assert [member.value for member in enum] == components[name]["enum"]


def test_client_default_policy_is_one_the_service_knows(components: dict[str, Any]) -> None:
    assert client_config.ClientConfig().policy in components["PolicyName"]["enum"]


def test_the_shape_check_catches_drift(components: dict[str, Any]) -> None:
    """The comparison is not vacuous: a renamed field or a narrowed type is caught."""

    class Drifted(BaseModel):
        rule: int
        name: str
        where: int

    drifted, server = client_properties(Drifted), server_properties(components, "Violation")
    assert set(drifted) != set(server)
    assert not accepts(drifted["rule"], server["rule"])
