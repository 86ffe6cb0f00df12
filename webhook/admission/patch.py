"""RFC 6902 patch building: only what changed, so our own output needs no patch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.admission.review import Op
from webhook.templating import record_annotations as records
from webhook.templating.spec_fields import escape


def build_patch(
    obj: Mapping[str, Any],
    values: Mapping[str, str],
    templates: Mapping[str, str],
    resolved: Mapping[str, Mapping[str, str]],
    current: Mapping[str, str] | None = None,
    annotations: Mapping[str, str | None] | None = None,
    spec: Mapping[str, Any] | None = None,
) -> list[Op]:
    """Ops that set field values and bring the label and records up to date.

    ``values`` maps pointers (which exist in ``obj``) to their new strings; ``current``
    may give the values as admitted, saving a walk down each pointer. ``annotations``
    sets further annotations (None: removed), in the same ops as the records.
    Records for every managed field are rewritten whole: a field that is not
    in ``templates`` any more loses its record, and with no field left the
    label and records are removed.

    ``spec``, when given, is the whole spec wanted (a rollout's traffic split):
    each top-level key of it that differs from ``obj``'s is replaced whole, and
    ``values`` under such a key are left to that replacement. A split adds and
    removes list items (``spec.canary``, ``spec.predictors``), which would shift
    the pointers of item-by-item ops.
    """
    known = current or {}
    whole = _changed_keys(obj.get("spec"), spec) if spec is not None else {}
    ops: list[Op] = [_key_op(obj, key, value) for key, value in whole.items()]
    ops += [
        {"op": "replace", "path": pointer, "value": value}
        for pointer, value in values.items()
        if (not whole or _spec_key(pointer) not in whole)
        and (known[pointer] if pointer in known else _get(obj, pointer)) != value
    ]
    metadata = obj.get("metadata") or {}
    extra = annotations or {}
    wanted = {key: value for key, value in extra.items() if value is not None}
    absent = tuple(key for key, value in extra.items() if value is None)
    if templates:
        ops += _set_map(metadata, "labels", {records.MANAGED: "true"}, ())
        wanted |= {records.TEMPLATES: records.dumps(templates), records.RESOLVED: records.dumps(resolved)}
    else:
        ops += _set_map(metadata, "labels", {}, (records.MANAGED,))
        absent += (records.TEMPLATES, records.RESOLVED)
    ops += _set_map(metadata, "annotations", wanted, absent)
    if ops and "metadata" not in obj:
        ops.insert(0, {"op": "add", "path": "/metadata", "value": {}})
    return ops


_ABSENT = object()


def _changed_keys(sent: object, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys of ``wanted`` (or of the spec as sent) whose values differ; ``_ABSENT``: to remove."""
    have: Mapping[str, Any] = sent if isinstance(sent, dict) else {}
    changed = {key: value for key, value in wanted.items() if key not in have or have[key] != value}
    changed |= {key: _ABSENT for key in have if key not in wanted}
    return changed


def _key_op(obj: Mapping[str, Any], key: str, value: Any) -> Op:
    path = f"/spec/{escape(key)}"
    if value is _ABSENT:
        return {"op": "remove", "path": path}
    spec = obj.get("spec")
    return {"op": "replace" if isinstance(spec, dict) and key in spec else "add", "path": path, "value": value}


def _spec_key(pointer: str) -> str | None:
    """The top-level spec key a pointer lies under (unescaped), if it lies under spec."""
    parts = pointer.split("/")
    if len(parts) < 3 or parts[1] != "spec":
        return None
    return parts[2].replace("~1", "/").replace("~0", "~")


def _set_map(metadata: Mapping[str, Any], field: str, wanted: Mapping[str, str], absent: tuple[str, ...]) -> list[Op]:
    current = metadata.get(field)
    if not isinstance(current, dict):
        return [{"op": "add", "path": f"/metadata/{field}", "value": dict(wanted)}] if wanted else []
    ops: list[Op] = []
    for key, value in wanted.items():
        if current.get(key) != value:
            op = "replace" if key in current else "add"
            ops.append({"op": op, "path": f"/metadata/{field}/{escape(key)}", "value": value})
    ops += [{"op": "remove", "path": f"/metadata/{field}/{escape(key)}"} for key in absent if key in current]
    return ops


def _get(obj: Any, pointer: str) -> Any:
    node = obj
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def annotations_after(obj: Mapping[str, Any], ops: list[Op]) -> dict[str, Any]:
    """``obj``'s metadata.annotations as ``ops`` (from ``build_patch``) would leave them."""
    metadata = obj.get("metadata")
    found = metadata.get("annotations") if isinstance(metadata, dict) else None
    result: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    prefix = "/metadata/annotations/"
    for op in ops:
        path = op["path"]
        if path == "/metadata/annotations":
            result = dict(op["value"])
        elif path.startswith(prefix):
            key = path[len(prefix) :].replace("~1", "/").replace("~0", "~")
            if op["op"] == "remove":
                result.pop(key, None)
            else:
                result[key] = op["value"]
    return result


def annotations_size(annotations: Mapping[str, Any]) -> int:
    """Bytes the apiserver counts against its annotation limit: every key and value, UTF-8."""
    return sum(
        len(str(key).encode(errors="surrogatepass")) + len(_text(value).encode(errors="surrogatepass"))
        for key, value in annotations.items()
    )


def _text(value: Any) -> str:
    # the apiserver stores only strings; anything else fails its own validation, so any size will do
    return value if isinstance(value, str) else ""
