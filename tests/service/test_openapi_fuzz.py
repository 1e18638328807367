"""Schemathesis against /openapi.json (in-process ASGI): no 5xx, responses match the schema.

Bounded: a few examples per operation (schemathesis' Python API with Hypothesis; its
pytest plugin does not run under this pytest). Writes are on (with the token) so their
routes are fuzzed too; URL fetching is on with every connection refused: the fuzzer's
URLs never leave the process (a resolver that knows no host, and a socket guard).
"""

from __future__ import annotations

import schemathesis
from _service_data import image_bytes
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from similar_images.service.app import create_app

TOKEN = "fuzz-token"
EXAMPLES = 12  # per operation
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_the_api_has_no_5xx_and_matches_its_schema(make_engine, fake_dns, no_connections):
    fake_dns({})
    engine = make_engine(token=TOKEN, allow_writes=True, allow_urls=True, url_timeout=0.5)
    app = create_app(engine, warm_up=False)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/search", "GET /api/images/{image_id}",
                                               "GET /api/images/{image_id}/thumbnail", "GET /api/health",
                                               "GET /api/stats", "POST /api/images", "DELETE /api/images/{image_id}"}
    # first the real thing, through the same transport and checks (fuzzed DELETEs come later)
    search = next(op for op in operations if op.label == "POST /api/search")
    for body, media_type in [({"image": image_bytes(4), "k": 3}, "multipart/form-data"),
                             ({"id": 4, "k": 3}, "application/json")]:
        case = schema.make_case(operation=search, body=body, media_type=media_type, headers=auth)
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code == 200 and response.json()["results"][0]["id"] == 4
    seen = {}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            case.headers = {**(case.headers or {}), **auth}
            response = case.call_and_validate(checks=CHECKS)
            seen.setdefault(case.operation.label, set()).add(response.status_code)

        fuzz()
    assert all(status < 500 for statuses in seen.values() for status in statuses), seen
    assert 200 in seen["GET /api/health"] and no_connections == []
