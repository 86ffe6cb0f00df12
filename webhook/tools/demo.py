"""``make demo``: modelpin in front of a real control plane on this machine, for the README's tour.

``python -m webhook.tools.demo [--dir DIR]`` starts etcd and kube-apiserver (the binaries
``hack/controlplane.sh`` builds for the test suite), installs the serving CRDs and modelpin's
shipped webhook configuration and guard, and runs ``modelpin serve`` and ``modelpin reconcile``
against a local sqlite MLflow registry holding the model ``iris`` (versions 1 and 2, alias
``@champion`` on 1). It writes ``DIR/env.sh`` (KUBECONFIG, MODELPIN_CONFIG, PATH) and stays up
until interrupted, then stops every process it started.

``python -m webhook.tools.demo move-alias MODEL ALIAS VERSION`` moves an alias in the registry
named by ``$MODELPIN_CONFIG``, as a data scientist would with the MLflow client.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.config import load_settings
from webhook.tools import certs
from webhook.tools.kubeconfigs import write_single_user
from webhook.tools.processes import Process, free_port

REPO = Path(__file__).resolve().parents[2]
# The real CRDs where the checkout has them beside it, else the suite's stand-ins of the same shapes.
CRD_DIRS = ((REPO.parent / "shared" / "crds-upstream").resolve(), REPO / "tests" / "e2e" / "crds")
DEMO_MODEL = "iris"
# Fixed locations, so the tour can wait for the exact URI a version resolves to.
DEMO_LOCATION = "s3://modelpin-demo/iris/{version}"
RECONCILER_USER = "modelpin-demo-reconciler"
START_TIMEOUT = 120.0
MARKER = ".modelpin-demo"


def _client_cert(ca_dir: Path, user: str, group: str) -> tuple[Path, Path]:
    """A client certificate the apiserver maps to ``user`` in ``group`` (O=group, CN=user)."""
    certs.ensure_ca(ca_dir, "modelpin demo client CA")
    return certs.issue_client(ca_dir, user, days=7, stem=user, organization=group)


def seed_registry(tracking_uri: str) -> None:
    """``iris`` versions 1 and 2 at fixed locations, ``@champion`` on version 1."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(DEMO_MODEL)
    for version in (1, 2):
        client.create_model_version(DEMO_MODEL, source=DEMO_LOCATION.format(version=version))
    client.set_registered_model_alias(DEMO_MODEL, "champion", "1")


class Demo:
    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.children: list[Process] = []
        self.bin_dir = Path()
        self.kubeconfig = self.dir / "kubeconfig"
        self.config = self.dir / "modelpin.yaml"
        self.env_file = self.dir / "env.sh"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def _start(self, argv: Sequence[str], log: str, env: dict[str, str] | None = None) -> Process:
        child = Process(argv, self.dir / log, env)
        self.children.append(child)
        return child

    def start(self) -> None:
        # Emptied only when an earlier demo made it: --dir pointed at anything else is refused, not erased.
        if self.dir.exists() and any(self.dir.iterdir()) and not (self.dir / MARKER).is_file():
            raise RuntimeError(f"{self.dir} exists and is not a demo folder; choose another --dir")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        (self.dir / MARKER).write_text("made by python -m webhook.tools.demo; emptied at its next start\n")
        say(
            "building or finding etcd, kube-apiserver and kubectl (hack/controlplane.sh; the first build takes minutes)"
        )
        subprocess.run(["bash", str(REPO / "hack" / "controlplane.sh")], check=True, stdout=sys.stderr)
        where = ["bash", str(REPO / "hack" / "controlplane.sh"), "--print-bin-dir"]
        self.bin_dir = Path(subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip())
        (self.dir / "bin").mkdir()
        (self.dir / "bin" / "kubectl").symlink_to(self.bin_dir / "kubectl")
        server = self._start_control_plane()
        self._install_cluster()
        self._write_config()
        self._start_webhook()
        self._start_reconciler()
        venv_bin = Path(sys.executable).parent
        self.env_file.write_text(
            f"export KUBECONFIG={self.kubeconfig}\n"
            f"export MODELPIN_CONFIG={self.config}\n"
            f'export PATH={self.dir / "bin"}:{venv_bin}:"$PATH"\n'
        )
        say(f"kube-apiserver {server}, webhook and reconciler up; logs in {self.dir}")

    def _start_control_plane(self) -> str:
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        etcd = self._start(
            [
                str(self.bin_dir / "etcd"),
                "--name=demo",
                f"--data-dir={self.dir / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=demo={peer}",
                "--unsafe-no-fsync",  # throwaway data
                "--log-level=warn",
            ],
            "etcd.log",
        )
        etcd.wait_until(
            lambda: b'"health":"true"' in urllib.request.urlopen(f"{client}/health", timeout=2).read(), START_TIMEOUT
        )

        pki = self.dir / "pki"
        pki.mkdir()
        admin = _client_cert(pki / "client-ca", "admin", "system:masters")
        # the reconciler gets a name of its own: the webhook honours refresh tokens from it alone
        reconciler = _client_cert(pki / "client-ca", RECONCILER_USER, "system:masters")
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (pki / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        port = free_port()
        server = f"https://127.0.0.1:{port}"
        apiserver_certs = self.dir / "apiserver-certs"
        apiserver = self._start(
            [
                str(self.bin_dir / "kube-apiserver"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--etcd-servers={client}",
                f"--cert-dir={apiserver_certs}",
                f"--client-ca-file={pki / 'client-ca' / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                # no controller-manager creates the "default" ServiceAccount (as envtest)
                "--disable-admission-plugins=ServiceAccount",
            ],
            "kube-apiserver.log",
        )
        ca = apiserver_certs / "apiserver.crt"  # self-signed by the apiserver at start
        for path, (cert, key) in ((self.kubeconfig, admin), (self.dir / "reconciler.kubeconfig", reconciler)):
            user = {"client-certificate": str(cert), "client-key": str(key)}
            write_single_user(path, server, ca, user, cluster="modelpin-demo", user_name="user")

        def ready() -> bool:
            context = ssl.create_default_context(cafile=str(ca))
            context.load_cert_chain(str(admin[0]), str(admin[1]))
            with urllib.request.urlopen(f"{server}/readyz", timeout=5, context=context) as resp:
                return bool(resp.status == 200)

        apiserver.wait_until(ready, START_TIMEOUT)
        return server

    def _install_cluster(self) -> None:
        crds = next(d for d in CRD_DIRS if d.is_dir())
        # server-side: the upstream CRDs are too large for client-side apply's annotation
        self.kubectl("apply", "--server-side", "-f", str(crds))
        deadline = time.monotonic() + START_TIMEOUT
        while self.kubectl(
            "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=False
        ).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError("the CRDs never became Established")
            time.sleep(1)
        self.kubectl("create", "namespace", "modelpin-system")

    def _base_docs(self) -> list[dict[str, Any]]:
        rendered = self.kubectl("kustomize", str(REPO / "manifests" / "base")).stdout
        return [d for d in yaml.safe_load_all(rendered) if d]

    def _write_config(self) -> None:
        tracking_uri = f"sqlite:///{self.dir / 'registry.db'}"
        seed_registry(tracking_uri)
        config = {
            "default_selector": "@champion",
            "registries": {"mlflow": {"tracking_uri": tracking_uri}},
            "reconciler_usernames": [RECONCILER_USER],
            "reconciler": {
                "poll_interval_seconds": 2,
                "lease_namespace": "modelpin-system",
                "lease_duration_seconds": 5,
            },
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def _modelpin(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "webhook", *args, "--config", str(self.config), "--log-level", "info"]

    def _start_webhook(self) -> None:
        bundle = certs.issue(self.dir / "webhook-certs", ["localhost", "127.0.0.1"])
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        serve = ["serve", "--port", str(port), "--tls-cert", str(bundle.cert), "--tls-key", str(bundle.key)]
        webhook = self._start(self._modelpin(*serve), "webhook.log")
        tls = ssl.create_default_context(cafile=str(bundle.ca_cert))
        webhook.wait_until(
            lambda: urllib.request.urlopen(f"{url}/readyz", timeout=2, context=tls).status == 200, START_TIMEOUT
        )
        # The shipped configuration and guard, with the webhook reached by URL instead of its Service.
        docs = self._base_docs()
        (hooks,) = [copy.deepcopy(d) for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
        for hook in hooks["webhooks"]:
            ca_bundle = base64.b64encode(bundle.ca_cert.read_bytes()).decode()
            hook["clientConfig"] = {"url": f"{url}/mutate", "caBundle": ca_bundle}
        guard = [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([hooks, *guard]))
        self._wait_for_webhook()

    def _wait_for_webhook(self) -> None:
        """The apiserver picks up a new webhook configuration asynchronously."""
        probe = yaml.safe_load((REPO / "examples" / "iris-inferenceservice.yaml").read_text())
        probe["metadata"]["name"] = "probe"
        deadline = time.monotonic() + 30
        while True:
            out = self.kubectl(
                "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe), check=False
            )
            # the records keep the template in an annotation; the spec holds the URI once admitted
            if out.returncode == 0 and "models:/" not in json.dumps(json.loads(out.stdout)["spec"]):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the apiserver never called the webhook: {out.stderr.strip()}")
            time.sleep(0.5)

    def _start_reconciler(self) -> None:
        bundle = certs.issue(self.dir / "reconciler-certs", ["localhost", "127.0.0.1"])
        port = free_port()
        args = ["reconcile", "--port", str(port), "--tls-cert", str(bundle.cert), "--tls-key", str(bundle.key)]
        args += ["--kubeconfig", str(self.dir / "reconciler.kubeconfig"), "--identity", "demo"]
        # no MLflow webhooks in the demo: the reconciler polls
        env = {"MODELPIN_MLFLOW_WEBHOOK_SECRET": ""}
        reconciler = self._start(self._modelpin(*args), "reconciler.log", env)
        tls = ssl.create_default_context(cafile=str(bundle.ca_cert))
        url = f"https://127.0.0.1:{port}/readyz"
        reconciler.wait_until(lambda: urllib.request.urlopen(url, timeout=2, context=tls).status == 200, START_TIMEOUT)

    def stop(self) -> None:
        while self.children:
            self.children.pop().stop()  # reverse order: reconciler, webhook, apiserver, etcd


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def up(directory: Path) -> int:
    demo = Demo(directory)
    # SIGTERM as Ctrl-C, at any point of the start too: whatever has started is stopped. SIGINT is
    # set explicitly because a shell starting the demo in the background leaves it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        demo.start()
        print(f"KUBECONFIG={demo.kubeconfig}", flush=True)
        print(f"ready: in another shell, from this folder: source {os.path.relpath(demo.env_file)}", flush=True)
        print("then follow README.md's tour; Ctrl-C stops the demo", flush=True)
        while True:
            for child in demo.children:
                if child.proc.poll() is not None:
                    say(f"{child.name} exited with {child.proc.returncode}; the end of {child.log}:\n{child.tail()}")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        say(f"demo: {exc}")
        return 1
    finally:
        demo.stop()
        say("demo stopped")


def move_alias(model: str, alias: str, version: str) -> int:
    from mlflow.tracking import MlflowClient

    settings = load_settings(Path(os.environ["MODELPIN_CONFIG"]) if os.environ.get("MODELPIN_CONFIG") else None)
    registry = settings.registries.get(settings.default_registry)
    if registry is None:
        say("move-alias: no registry configured; source the demo's env.sh first")
        return 2
    from mlflow.exceptions import MlflowException

    uri = registry.tracking_uri
    try:
        MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(model, alias, version)
    except MlflowException as exc:
        say(f"move-alias: {exc.message}")
        return 1
    print(f"{model}@{alias} -> version {version}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webhook.tools.demo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    start = sub.add_parser("up", help="start the demo (the default)")
    start.add_argument("--dir", type=Path, default=Path("modelpin-demo"), help="working folder (emptied first)")
    move = sub.add_parser("move-alias", help="point a registered model's alias at another version")
    move.add_argument("model")
    move.add_argument("alias")
    move.add_argument("version")
    args = parser.parse_args(argv)
    if args.command == "move-alias":
        return move_alias(args.model, args.alias, args.version)
    return up(getattr(args, "dir", Path("modelpin-demo")))


if __name__ == "__main__":
    sys.exit(main())
