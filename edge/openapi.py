"""An OpenAPI 3.1 document built from the HTTP steps and their schemas."""

from __future__ import annotations

import re
from typing import Any

from .schema import compile_schema

__all__ = ["build_openapi"]

_PARAM = re.compile(r":([A-Za-z0-9_]+)")


def build_openapi(steps, *, title: str = "edge app", version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict] = {}
    components: dict[str, Any] = {}
    seen: dict[str, Any] = {}  # component name -> the definition as a step's schema had it
    for step in sorted(steps, key=lambda s: s.name):
        for trigger in step.triggers:
            if trigger.type != "http":
                continue
            path = _PARAM.sub(r"{\1}", trigger.path)
            operation: dict[str, Any] = {
                "operationId": step.name if len(step.triggers) == 1 else f"{step.name}_{trigger.index}",
                "summary": step.description or step.name,
            }
            if step.flows:
                operation["tags"] = list(step.flows)
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _PARAM.findall(trigger.path)
            ]
            for query in trigger.query_params or ():
                entry = {"name": query.name, "in": "query", "schema": {"type": "string"}}
                if query.description:
                    entry["description"] = query.description
                params.append(entry)
            if params:
                operation["parameters"] = params
            if trigger.body_schema is not None:
                schema = compile_schema(trigger.body_schema, where=f"{step.file}: triggers[{trigger.index}].bodySchema")
                body = {"schema": _hoist(schema.json_schema(), components, seen)}
                operation["requestBody"] = {  # a form is checked against the schema too (docs/http.md)
                    "required": True,
                    "content": {"application/json": body, "application/x-www-form-urlencoded": body},
                }
            responses: dict[str, Any] = {}
            for status, spec in (trigger.response_schema or {}).items():
                schema = compile_schema(spec, where=f"{step.file}: triggers[{trigger.index}].responseSchema[{status}]")
                responses[str(status)] = {
                    "description": f"{status} response",
                    "content": {"application/json": {"schema": _hoist(schema.json_schema(), components, seen)}},
                }
            if not responses:
                responses["200"] = {"description": "OK"}
            operation["responses"] = responses
            paths.setdefault(path, {})[trigger.method.lower()] = operation
    document = {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": paths}
    if components:
        document["components"] = {"schemas": components}
    return document


def _hoist(schema: dict, components: dict, seen: dict) -> dict:
    """``schema`` with its ``$defs`` (pydantic's nested models) moved to the document's
    ``components.schemas`` and its ``$ref`` s rewritten to point there: inside an OpenAPI
    document ``#/$defs/...`` resolves against the document root, where there is none. Two
    steps' models of one name and different shape get ``Name`` and ``Name2``."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    if not defs:
        return schema
    renamed = {}
    for name, definition in defs.items():
        unique, n = name, 1
        while unique in seen and seen[unique] != definition:
            n += 1
            unique = f"{name}{n}"
        renamed[name] = unique
        seen[unique] = definition
    refs = {f"#/{where}/{name}": f"#/components/schemas/{unique}"
            for where in ("$defs", "definitions") for name, unique in renamed.items()}

    def rewrite(node):
        if isinstance(node, dict):
            return {k: (refs.get(v, v) if k == "$ref" and isinstance(v, str) else rewrite(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name, definition in defs.items():
        components[renamed[name]] = rewrite(definition)
    return rewrite({k: v for k, v in schema.items() if k not in ("$defs", "definitions")})
