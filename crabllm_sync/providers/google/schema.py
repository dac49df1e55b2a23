"""JSON Schema -> the OpenAPI 3.0 subset Gemini's `Schema` accepts, pure.

Used for function `parameters` and `response_format` schemas. Keeps what
Gemini validates against, inlines `$ref`, and drops what it would reject.
"""

from __future__ import annotations

from typing import Any

from crabllm_sync.errors import UnsupportedError

# Fields of Gemini's Schema message (generativelanguage v1beta) that we send.
# `default` and `example` are documentation only and older API versions reject
# them, so they are dropped with the rest (additionalProperties, $schema, ...).
_KEEP = frozenset(
    {
        "description",
        "enum",
        "format",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "nullable",
        "pattern",
        "propertyOrdering",
        "required",
        "title",
    }
)
_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})
# The Gemini Developer API fails a request on any other format.
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}


def clean_schema(schema: Any, where: str, provider: str = "google") -> dict[str, Any]:
    """A Gemini Schema for a JSON Schema; `where` names it in errors."""
    if not isinstance(schema, dict):
        raise UnsupportedError(
            f"{where}: a JSON Schema object is required by provider '{provider}'",
            param=where,
        )
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _clean(schema, defs, where, provider, ())


def _clean(
    schema: Any,
    defs: dict[str, Any],
    where: str,
    provider: str,
    expanding: tuple[str, ...],
) -> dict[str, Any]:
    if schema is True or schema == {}:
        return {}
    if not isinstance(schema, dict):
        raise UnsupportedError(
            f"{where}: schema must be an object for provider '{provider}'",
            param=where,
        )
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = _ref_name(ref, where, provider)
        if name not in defs:
            raise UnsupportedError(
                f"{where}: $ref '{ref}' points nowhere in $defs", param=where
            )
        if name in expanding:
            # Gemini has no references: a recursive type ends in a free object.
            out: dict[str, Any] = {"type": "OBJECT"}
        else:
            out = _clean(defs[name], defs, where, provider, (*expanding, name))
        for key in ("description", "title"):
            if key in schema:
                out[key] = schema[key]
        return out
    schema = _merge_all_of(schema)
    out = {k: v for k, v in schema.items() if k in _KEEP}
    nullable = bool(schema.get("nullable"))

    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        nullable = nullable or len(kinds) < len(kind)
        if len(kinds) > 1:
            out["anyOf"] = [{"type": k.upper()} for k in kinds if k in _TYPES]
            kind = None
        else:
            kind = kinds[0] if kinds else None
    if kind == "null":
        nullable, kind = True, None
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
    if isinstance(kind, str):
        if kind not in _TYPES:
            raise UnsupportedError(
                f"{where}: type '{kind}' is not a JSON Schema type", param=where
            )
        out["type"] = kind.upper()

    variants = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(variants, list):
        cleaned = []
        for v in variants:
            if isinstance(v, dict) and v.get("type") == "null":
                nullable = True
                continue
            cleaned.append(_clean(v, defs, where, provider, expanding))
        if len(cleaned) == 1 and "type" not in out:
            out.update({k: v for k, v in cleaned[0].items() if k not in out})
        elif cleaned:
            out["anyOf"] = cleaned

    if "const" in schema:
        out["enum"] = [schema["const"]]
    if "enum" in out:
        values = out["enum"]
        if None in values:
            nullable = True
        out["enum"] = [v if isinstance(v, str) else _enum_str(v) for v in values]
        out["enum"] = [v for v in out["enum"] if v is not None]
        out.setdefault("type", "STRING")
        if not out["enum"]:
            del out["enum"]

    fmt = out.get("format")
    if fmt is not None and fmt not in _FORMATS.get(out.get("type", ""), ()):
        del out["format"]

    props = schema.get("properties")
    if isinstance(props, dict) and props:
        out["properties"] = {
            name: _clean(sub, defs, f"{where}.{name}", provider, expanding)
            for name, sub in props.items()
        }
        for key in ("required", "propertyOrdering"):
            names = [r for r in out.get(key, []) if r in out["properties"]]
            if names:
                out[key] = names
            else:
                out.pop(key, None)
    else:
        out.pop("required", None)
        out.pop("propertyOrdering", None)
    if "items" in schema and isinstance(schema["items"], dict):
        out["items"] = _clean(schema["items"], defs, where + "[]", provider, expanding)
    elif out.get("type") == "ARRAY" and isinstance(schema.get("prefixItems"), list):
        # Tuples: Gemini has no prefixItems, so any listed item type may appear.
        items = [
            _clean(s, defs, where + "[]", provider, expanding)
            for s in schema["prefixItems"]
        ]
        out["items"] = items[0] if len(items) == 1 else {"anyOf": items}
    if nullable:
        out["nullable"] = True
    return out


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    parts = schema.get("allOf")
    if not isinstance(parts, list):
        return schema
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _ref_name(ref: str, where: str, provider: str) -> str:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    raise UnsupportedError(
        f"{where}: $ref '{ref}' cannot be sent to provider '{provider}': "
        "only local #/$defs/ references are inlined",
        param=where,
    )


def _enum_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
