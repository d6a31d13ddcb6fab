"""The OpenAPI document at /api/v1/openapi.json: it is valid OpenAPI 3.1 and names exactly the app's /api/v1
routes with their methods, so a new endpoint without a description (or a described one that is gone) fails here."""

from __future__ import annotations

import re


def _routes(app) -> set[tuple[str, str]]:
    """(path in OpenAPI form, method) for every /api/v1 rule; HEAD and OPTIONS only where a view handles them."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods:
            automatic = (method == "HEAD" and "GET" in rule.methods) or \
                        (method == "OPTIONS" and rule.provide_automatic_options)
            if not automatic:
                found.add((path, method.lower()))
    return found


def test_the_document_names_every_route_and_no_other(client, app):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    described = {(path, method) for path, operations in document["paths"].items() for method in operations}
    routes = _routes(app)
    assert sorted(routes - described) == [], "routes missing from server/api/openapi_doc.py"
    assert sorted(described - routes) == [], "operations in server/api/openapi_doc.py that the app does not have"


def test_the_document_is_valid_openapi(client):
    import schemathesis

    schema = schemathesis.openapi.from_dict(client.get("/api/v1/openapi.json").get_json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in schema.raw_schema["paths"].values())
