from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.admitting import response_to
from tests.support.fakes import Clock, FakeRegistry, make_settings, seed_uri
from tests.support.reviews import FIXTURES
from webhook.registry.clients import Unavailable
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.tools.render import (
    RenderError,
    dump_documents,
    load_documents,
    read_source,
    render_documents,
    review_request,
    with_servability,
)

MULTI = (
    (FIXTURES / "seldon-seed.yaml").read_text()
    + "\n---\n"
    + """
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
data:
  uri: models:/not/a/template/here
---
# an empty document is dropped
---
apiVersion: serving.kserve.io/v1alpha1
kind: TrainedModel
metadata:
  name: broken
spec:
  model:
    storageUri: models:/nope@champion
---
- just
- a list
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fraud
  namespace: restricted
spec:
  predictor:
    model:
      storageUri: '{{ mlflow.s3["fraud@champion"] }}'
"""
)


def test_load_documents_drops_empty_ones() -> None:
    docs = load_documents(MULTI)
    assert [d["kind"] if isinstance(d, dict) else type(d).__name__ for d in docs] == [
        "SeldonDeployment",
        "ConfigMap",
        "TrainedModel",
        "list",
        "InferenceService",
    ]


def test_load_documents_rejects_bad_yaml() -> None:
    with pytest.raises(RenderError, match=r"^not valid YAML: "):
        load_documents("a: [1, 2\nb: c")


def test_review_request() -> None:
    obj = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"namespace": "ns1"}}
    req = review_request(obj, None)
    assert req["kind"] == {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"}
    assert req["namespace"] == "ns1"
    assert req["operation"] == "CREATE"
    assert req["dryRun"] is True
    assert req["object"] is obj
    assert req["uid"]
    assert review_request(obj, "explicit")["namespace"] == "explicit"
    assert review_request({"apiVersion": "v1", "kind": "ConfigMap"}, None)["kind"] == {
        "group": "",
        "version": "v1",
        "kind": "ConfigMap",
    }
    assert review_request({"apiVersion": "v1", "kind": "ConfigMap"}, None)["namespace"] == "default"


async def test_render_documents(resolver: Resolver) -> None:
    docs = load_documents(MULTI)
    out, errors, warnings = await render_documents(docs, namespace=None, resolver=resolver)
    assert len(out) == 5
    seldon, configmap, broken, a_list, isvc = out
    graph = seldon["spec"]["predictors"][0]["graph"]
    assert graph["modelUri"] == seed_uri("iris demo4", 1)
    assert graph["children"][0]["modelUri"] == seed_uri("iris demo1", 1)
    assert graph["children"][0]["children"][0]["modelUri"] == seed_uri("iris demo2", 1)
    assert graph["children"][1]["modelUri"] == seed_uri("iris demo3", 1)
    assert seldon["metadata"]["labels"] == {"modelpin.io/managed": "true"}
    assert records.RESOLVED in seldon["metadata"]["annotations"]
    assert configmap == docs[1]
    assert broken == docs[2]  # unchanged, with an error
    assert a_list == ["just", "a list"]
    # the object's own namespace applies: fraud is allowed in 'restricted'
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://mlflow/7/r2/artifacts/model"
    assert errors == [
        "document 3 (TrainedModel/broken): modelpin could not resolve 1 template: /spec/model/storageUri: "
        "template 'models:/nope@champion': model 'nope' has no alias 'champion'"
    ]
    assert warnings == []
    # the input documents are left as they were
    assert docs[0]["spec"]["predictors"][0]["graph"]["modelUri"] == '{{ mlflow.blob["iris demo4"] }}'


async def test_render_namespace_override_applies_policy(resolver: Resolver) -> None:
    docs = load_documents((FIXTURES / "seldon-model.yaml").read_text())
    out, errors, _ = await render_documents(docs, namespace="restricted", resolver=resolver)
    assert out == docs
    assert len(errors) == 1
    assert errors[0].startswith("document 1 (Model/iris): modelpin could not resolve 1 template: /spec/storageUri: ")
    assert "namespace 'restricted' may not use model 'iris demo2'" in errors[0]


async def test_render_warnings_name_the_document(resolver: Resolver, registry: FakeRegistry, clock: Clock) -> None:
    docs = load_documents((FIXTURES / "trainedmodel.yaml").read_text())
    await render_documents(docs, namespace=None, resolver=resolver)
    registry.fail_with(Unavailable("registry 'mlflow' answered 503: down"))
    clock.advance(60)
    out, errors, warnings = await render_documents(docs, namespace=None, resolver=resolver)
    assert errors == []
    assert out[0]["spec"]["model"]["storageUri"] == "s3://mlflow/7/r2/artifacts/model"
    assert warnings == [
        "document 1 (TrainedModel/fraud-tm): fraud@champion: registry 'mlflow' answered 503: down; "
        "serving version 2 resolved 60s ago"
    ]


def test_dump_documents_round_trip() -> None:
    docs = load_documents(MULTI)
    text = dump_documents(docs)
    assert text.count("\n---\n") == 4
    assert load_documents(text) == docs
    # key order is kept
    assert text.startswith("apiVersion: machinelearning.seldon.io/v1\nkind: SeldonDeployment\n")


def test_read_source_takes_a_file_or_a_directory_like_kubectl(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("kind: B\n")
    (tmp_path / "a.yml").write_text("kind: A\n---\nkind: A2\n")
    (tmp_path / "c.json").write_text('{"kind": "C"}')
    (tmp_path / "notes.txt").write_text("kind: ignored\n")
    assert [d["kind"] for d in load_documents(read_source(str(tmp_path)))] == ["A", "A2", "B", "C"]
    assert load_documents(read_source(str(tmp_path / "b.yaml"))) == [{"kind": "B"}]


def test_read_source_says_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="cannot read"):
        read_source(str(tmp_path / "missing.yaml"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RenderError, match="holds no"):
        read_source(str(tmp_path / "empty"))


# --- what each kind can fetch ---------------------------------------------------------

DENIED_KINDS = """
apiVersion: serving.kserve.io/v1alpha1
kind: TrainedModel
metadata:
  name: iris-tm
spec:
  inferenceService: iris
  model:
    framework: sklearn
    memory: 1Gi
    storageUri: '{{ mlflow.auto["iris demo1@champion"] }}'
---
apiVersion: serving.kserve.io/v1alpha1
kind: TrainedModel
metadata:
  name: lake-tm
spec:
  inferenceService: lake
  model:
    framework: sklearn
    memory: 1Gi
    storageUri: models:/lake@champion
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: lake
spec:
  storageUri: models:/lake@champion
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: lake
spec:
  predictor:
    model:
      storageUri: models:/lake@champion
"""
HDFS = "hdfs://namenode:8020/lake/1/artifacts/model"


@pytest.fixture
def lake(registry: FakeRegistry) -> None:
    registry.add("lake", 1, HDFS, run_id="h1")
    registry.set_alias("lake", "champion", 1)


@pytest.mark.usefixtures("lake")
async def test_render_denies_what_the_kind_cannot_fetch(resolver: Resolver) -> None:
    docs = load_documents(DENIED_KINDS)
    out, errors, _ = await render_documents(docs, namespace=None, resolver=resolver)
    azure = "wasbs://artifacts@modelpinci.blob.core.windows.net/mlflow/10/run-1-1/artifacts/model"
    assert errors == [
        "document 1 (TrainedModel/iris-tm): modelpin could not resolve 1 template: /spec/model/storageUri: "
        "template '{{ mlflow.auto[\"iris demo1@champion\"] }}': a KServe TrainedModel (model agent) cannot fetch "
        f"artifact location '{azure}' (an Azure Blob folder: the model agent fetches an https:// URL with one GET "
        "of one file); it accepts s3://, gs://, http(s):// (one file)",
        "document 2 (TrainedModel/lake-tm): modelpin could not resolve 1 template: /spec/model/storageUri: "
        f"template 'models:/lake@champion': a KServe TrainedModel (model agent) cannot fetch artifact location "
        f"'{HDFS}' (hdfs://); it accepts s3://, gs://, http(s):// (one file)",
        "document 3 (Model/lake): modelpin could not resolve 1 template: /spec/storageUri: "
        f"template 'models:/lake@champion': a Seldon SeldonDeployment/Model (rclone) cannot fetch artifact location "
        f"'{HDFS}' (hdfs://); it accepts S3 (s3://, s3a://), GCS (gs://) and Azure Blob or ADLS Gen2 locations, "
        "written for their rclone remotes, and pvc://",
    ]
    assert out[:3] == docs[:3]
    # KServe's storage initializer has an hdfs branch: the InferenceService gets the location as it is.
    assert out[3]["spec"]["predictor"]["model"]["storageUri"] == HDFS


@pytest.mark.usefixtures("lake")
async def test_admission_denies_what_the_kind_cannot_fetch_with_422(resolver: Resolver) -> None:
    doc = load_documents(DENIED_KINDS)[1]
    response = await response_to(review_request(doc, None), resolver=resolver)
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    assert "a KServe TrainedModel (model agent) cannot fetch" in response["status"]["message"]


async def test_render_names_the_configured_rclone_remote(registry: FakeRegistry, clock: Clock) -> None:
    settings = make_settings(rclone={"azure": "azureblob", "azure_accounts": {"modelpinci": "azure-ci"}})
    resolver = Resolver(settings, {"mlflow": registry}, clock_ms=clock)
    try:
        out, errors, _ = await render_documents(
            load_documents((FIXTURES / "seldon-seed.yaml").read_text()), namespace=None, resolver=resolver
        )
    finally:
        await resolver.aclose()
    assert errors == []
    graph = out[0]["spec"]["predictors"][0]["graph"]
    assert graph["modelUri"] == "azure-ci://artifacts/mlflow/10/run-4-1/artifacts/model"


STAGED = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: a}
spec:
  predictor:
    model: {storageUri: models:/iris/Production}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: b}
spec:
  predictor:
    model: {storageUri: models:/iris/Production}
  transformer:
    containers:
      - env:
          - {name: STORAGE_URI, value: '{{ mlflow.s3["fraud/staging"] }}'}
          - {name: OTHER, value: models:/fraud@champion}
          - {name: BROKEN, value: '{{ nope'}
metadata2: models:/outside/Production
"""


def test_stage_hints_once_per_template() -> None:
    from webhook.tools.render import stage_hints

    assert stage_hints(load_documents(STAGED)) == [
        "models:/iris/Production uses a stage; MLflow deprecated stages: prefer an alias (models:/iris@production)",
        '{{ mlflow.s3["fraud/staging"] }} uses a stage; MLflow deprecated stages: prefer an alias '
        '({{ mlflow.s3["fraud@staging"] }})',
    ]
    assert stage_hints(load_documents(MULTI)) == []


def test_render_checks_servability_unless_told_otherwise() -> None:
    settings = make_settings(namespaces={"lab": {"servability": "off"}, "prod": {"require_tags": {"ok": "1"}}})
    default = with_servability(settings, None)
    assert default.servability == "deny"
    assert default.namespaces["lab"].servability == "off"  # a namespace's own choice still wins
    warn = with_servability(settings, "warn")
    assert (warn.servability, warn.namespaces["lab"].servability) == ("warn", None)
    assert warn.namespaces["prod"].require_tags == {"ok": "1"}
    assert settings.servability == "off" and settings.namespaces["lab"].servability == "off"  # not changed in place
