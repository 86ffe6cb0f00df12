"""Every declared template path, one object each, on the upstream CRDs and a real apiserver.

With the webhook up, each path's template is resolved (the stored value is an
artifact URI and recorded) or refused by the webhook; with the webhook down,
the guard refuses each one, naming the field. The objects are built from the
CRDs' own schemas (their required fields filled in), so they are objects the
real schemas accept, pruning included: a path the schema did not hold would be
pruned and fail the resolved check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import NS, apply_docs, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.upstream_crds import ABSENT, UPSTREAM_CRDS, crd
from webhook.templating.grammar import is_candidate
from webhook.templating.template_paths import ITEM, KINDS, FieldPath, KindPaths

pytestmark = pytest.mark.skipif(not UPSTREAM_CRDS.is_dir(), reason=ABSENT)

CASES = [(kind, path) for kind in KINDS for path in kind.paths]
# Whitespace the old guard's trim() and the old webhook's first-character test missed.
SPACES = ("\u00a0", "\v", "\u3000", "\u2028")


def _schema(kind: KindPaths) -> dict[str, Any]:
    (version,) = [v for v in crd(kind.kind)["spec"]["versions"] if v.get("storage")]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def skeleton(schema: dict[str, Any]) -> Any:
    """The least value the schema accepts: required fields only."""
    if schema.get("x-kubernetes-int-or-string"):
        return 1
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: skeleton(props[name]) for name in schema.get("required", [])}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return "x"


def place(schema: dict[str, Any], tokens: tuple[str, ...], value: str) -> Any:
    if not tokens:
        return value
    head, rest = tokens[0], tokens[1:]
    if head == ITEM:
        return [place(schema["items"], rest, value)]
    node = skeleton(schema)
    node[head] = place(schema["properties"][head], rest, value)
    return node


def pointer(path: FieldPath) -> str:
    return "/spec/" + "/".join("0" if t == ITEM else t for t in path.tokens)


def build(kind: KindPaths, schema: dict[str, Any], path: FieldPath, value: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{kind.group}/{kind.versions[0]}",
        "kind": kind.kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": place(schema, path.tokens, value),
    }


def resolve_pointer(obj: Any, ptr: str) -> Any:
    for token in ptr.split("/")[1:]:
        obj = obj[int(token)] if isinstance(obj, list) else obj[token]
    return obj


def dry_run(cluster: ControlPlane, obj: dict[str, Any]) -> tuple[int, str, str]:
    out = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj), check=False)
    return out.returncode, out.stdout, out.stderr


def each(cases: list[Any], check: Callable[[Any], str | None]) -> list[str]:
    # a few kubectl processes at a time: the machine's cores are shared
    with ThreadPoolExecutor(max_workers=3) as pool:
        return [problem for problem in pool.map(check, cases) if problem]


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    return {kind.kind: _schema(kind) for kind in KINDS}


def test_with_the_webhook_up_every_declared_path_is_resolved(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, schemas: dict[str, dict[str, Any]]
) -> None:
    def check(case: tuple[int, tuple[KindPaths, FieldPath]]) -> str | None:
        n, (kind, path) = case
        # every other case puts Unicode whitespace before the template
        lead = SPACES[n % len(SPACES)] if n % 2 else ""
        code, stdout, stderr = dry_run(
            cluster, build(kind, schemas[kind.kind], path, f"{lead}models:/fraud@champion", f"up-{n}")
        )
        where = f"{kind.kind} {path.dotted()}"
        if code != 0:
            return f"{where}: refused: {stderr.strip()[:300]}"
        stored = json.loads(stdout)
        ptr = pointer(path)
        value = resolve_pointer(stored, ptr)
        records = json.loads(stored["metadata"]["annotations"].get("modelpin.io/resolved", "{}"))
        if is_candidate(value) or "{{" in value or "://" not in value:
            return f"{where}: stored {value!r}"
        if records.get(ptr, {}).get("uri") != value:
            return f"{where}: not recorded at {ptr}: {records}"
        return None

    problems = each(list(enumerate(CASES)), check)
    assert not problems, "\n".join(problems)


def test_the_webhook_refuses_a_template_off_the_declared_paths(
    webhook: ModelpinServer, cluster: ControlPlane, schemas: dict[str, dict[str, Any]]
) -> None:
    # A string field the schema holds but no template may use (container args): in an object that
    # reaches the webhook, a template there is refused, naming the field.
    kind = next(k for k in KINDS if k.kind == "InferenceService")
    path = FieldPath(("predictor", "model", "storageUri"))
    obj = build(kind, schemas[kind.kind], path, "models:/fraud@champion", "off-path")
    obj["spec"]["predictor"]["model"]["args"] = ["models:/iris demo1@champion"]
    code, _, stderr = dry_run(cluster, obj)
    assert code != 0
    assert "/spec/predictor/model/args/0" in stderr and "not in a field where modelpin resolves" in stderr, stderr
    # Alone, it is no template: args are not a template-bearing field, so neither the
    # matchConditions nor the guard look at it and it is stored as written.
    obj = build(kind, schemas[kind.kind], path, "s3://bucket/model", "off-path-alone")
    obj["spec"]["predictor"]["model"]["args"] = ["models:/iris demo1@champion"]
    code, stdout, stderr = dry_run(cluster, obj)
    assert code == 0, stderr
    assert json.loads(stdout)["spec"]["predictor"]["model"]["args"] == ["models:/iris demo1@champion"]


@pytest.fixture
def webhook_down(
    webhook: ModelpinServer,
    cluster: ControlPlane,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    tmp_path: Path,
    schemas: dict[str, dict[str, Any]],
) -> Iterator[None]:
    doomed = ModelpinServer(tmp_path / "doomed", modelpin_config(mlflow_server.url), ca_dir)
    apply_docs(cluster, [webhook_configuration(cluster, doomed)])
    doomed.stop()
    try:
        # the apiserver sees configurations asynchronously: wait until a template is refused by the guard
        model = next(k for k in KINDS if k.kind == "Model")
        probe = build(model, schemas["Model"], FieldPath(("storageUri",)), "models:/x", "probe")
        for _ in range(60):
            if "modelpin-unresolved-templates" in dry_run(cluster, probe)[2]:
                break
        yield
    finally:
        apply_docs(cluster, [webhook_configuration(cluster, webhook)])
        wait_for_webhook(cluster)


def test_with_the_webhook_down_the_guard_refuses_every_declared_path(
    webhook_down: None, cluster: ControlPlane, schemas: dict[str, dict[str, Any]]
) -> None:
    def check(case: tuple[int, tuple[KindPaths, FieldPath]]) -> str | None:
        n, (kind, path) = case
        lead = SPACES[n % len(SPACES)] if n % 2 else ""
        template = f'{lead}{{{{ mlflow.blob["iris demo1@champion"] }}}}' if n % 3 else f"{lead}models:/iris demo1/1"
        code, stdout, stderr = dry_run(cluster, build(kind, schemas[kind.kind], path, template, f"down-{n}"))
        where = f"{kind.kind} {path.dotted()}"
        if code == 0:
            return f"{where}: admitted: {resolve_pointer(json.loads(stdout), pointer(path))!r}"
        if "ValidatingAdmissionPolicy 'modelpin-unresolved-templates'" not in stderr or f"{where} holds" not in stderr:
            return f"{where}: refused otherwise: {stderr.strip()[:300]}"
        return None

    problems = each(list(enumerate(CASES)), check)
    assert not problems, "\n".join(problems)
