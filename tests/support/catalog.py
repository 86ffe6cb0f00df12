"""Real models in a real registry, registered with the mlflow client.

Sources cover what MLflow 3 produces: ``runs:/`` (runs in experiments whose
artifact root is object storage), ``models:/m-<id>`` (logged models), and a
pyfunc model logged through the server's artifact proxy (``mlflow-artifacts:/``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

AZURE_ROOT = "wasbs://artifacts@modelpinci.blob.core.windows.net/mlflow/10"
S3_ROOT = "s3://mlflow/7"
SEED_MODELS = ("iris demo1", "iris demo2", "iris demo3", "iris demo4")
PROXIED_ROOT = "s3://mlflow-proxied/"


@dataclass
class Catalog:
    tracking_uri: str
    client: MlflowClient
    azure_experiment: str = ""
    s3_experiment: str = ""
    versions: dict[str, list[str]] = field(default_factory=dict)

    def new_run_version(self, name: str, experiment: str | None = None, tags: dict[str, str] | None = None) -> str:
        """A new version of ``name`` whose source is ``runs:/<run>/model``."""
        run = self.client.create_run(experiment or self.azure_experiment)
        self.client.set_terminated(run.info.run_id)
        if not self.client.search_registered_models(filter_string=f"name='{name}'"):
            self.client.create_registered_model(name)
        mv = self.client.create_model_version(
            name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags=tags
        )
        self.versions.setdefault(name, []).append(str(mv.version))
        return str(mv.version)

    def new_logged_model_version(self, name: str) -> str:
        """A new version of ``name`` whose source is ``models:/m-<id>``."""
        logged = self.client.create_logged_model(experiment_id=self.s3_experiment, name=name.replace(" ", "-"))
        self.client.finalize_logged_model(logged.model_id, "READY")
        if not self.client.search_registered_models(filter_string=f"name='{name}'"):
            self.client.create_registered_model(name)
        mv = self.client.create_model_version(name, source=f"models:/{logged.model_id}", model_id=logged.model_id)
        self.versions.setdefault(name, []).append(str(mv.version))
        return str(mv.version)

    def location(self, name: str, version: str) -> str:
        """Where the registry says the version's artifacts are, by the client's own API."""
        uri = str(self.client.get_model_version_download_uri(name, version))
        if uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].partition("/")
            return f"{self.client.get_run(run_id).info.artifact_uri}/{path}"
        return uri

    def version_for(self, name: str, alias: str) -> str:
        return str(self.client.get_model_version_by_alias(name, alias).version)


def populate(tracking_uri: str) -> Catalog:
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    cat = Catalog(tracking_uri, client)
    cat.azure_experiment = client.create_experiment("azure", artifact_location=AZURE_ROOT)
    cat.s3_experiment = client.create_experiment("s3", artifact_location=S3_ROOT)
    for name in SEED_MODELS:
        cat.new_run_version(name)
        latest = cat.new_run_version(name)
        client.set_registered_model_alias(name, "champion", latest)
    # fraud: logged-model sources, an alias, and stages
    for _ in range(3):
        cat.new_logged_model_version("fraud")
    client.set_registered_model_alias("fraud", "champion", "2")
    with warnings.catch_warnings():
        # stages are deprecated in MLflow but still what many registries use
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage("fraud", "1", "Production")
        client.transition_model_version_stage("fraud", "3", "Staging")
    # a KServe modelcar: the OCI image is named by a version tag
    cat.new_run_version("jukebox", experiment=cat.s3_experiment, tags={"git_commit": "0a1b2c3"})
    client.set_registered_model_alias("jukebox", "prod", "1")
    log_proxied_model(tracking_uri, "proxied")
    cat.versions["proxied"] = ["1"]
    return cat


def log_proxied_model(tracking_uri: str, name: str) -> None:
    """A real pyfunc model uploaded through the server's artifact proxy."""
    import mlflow
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # mlflow's advice on type hints

        class Echo(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return model_input

        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name=name)
