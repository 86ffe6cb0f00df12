"""A real Kubernetes control plane for tests: etcd + kube-apiserver, envtest-style.

Binaries come from ``hack/controlplane.sh`` (built from Go modules, cached under
``$MODELPIN_CACHE``); set ``MODELPIN_CONTROLPLANE_BIN`` to use prebuilt ones instead.
No controller-manager or scheduler runs: objects are stored and admitted, nothing
reconciles them (namespaces never finish deleting, pods stay Pending).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.pki import ClientPair, client_pair
from webhook.tools import certs
from webhook.tools.kubeconfigs import write_single_user
from webhook.tools.processes import Process, free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "controlplane.sh"
BINARIES = ("etcd", "kube-apiserver", "kubectl")


def ensure_binaries() -> Path:
    """The directory holding etcd, kube-apiserver and kubectl; builds them if needed."""
    if prebuilt := os.environ.get("MODELPIN_CONTROLPLANE_BIN"):
        return Path(prebuilt)
    # The script is idempotent and returns at once when the pinned binaries exist.
    build = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if build.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with {build.returncode}:\n{build.stdout[-6000:]}")
    where = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True, check=True)
    return Path(where.stdout.strip())


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.output}\nstderr: {self.stderr}"


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


class ControlPlane:
    """etcd + kube-apiserver on loopback, an admin (system:masters) kubeconfig, and a kubectl helper."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        apiserver_args: Sequence[str] = (),
        start_timeout: float = 120.0,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="modelpin-cp-")) if workdir is None else workdir
        self._bin_dir = bin_dir
        self.apiserver_args = list(apiserver_args)
        self.start_timeout = start_timeout
        self.kubeconfig = self.workdir / "kubeconfig"
        self.cert_dir = self.workdir / "apiserver-certs"
        self.ca_file = self.cert_dir / "apiserver.crt"  # self-signed serving cert + its CA, made by the apiserver
        self.client_ca_dir = self.workdir / "client-ca"
        self.admin_cert = self.client_ca_dir / "admin.crt"
        self.admin_key = self.client_ca_dir / "admin.key"
        self.port = 0
        self.server = ""
        self.etcd_url = ""
        self.start_seconds = 0.0
        self._procs: list[Process] = []
        self.webhook_client: ClientPair | None = None

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = ensure_binaries()
        return self._bin_dir

    def start(self) -> ControlPlane:
        if self._procs:
            raise RuntimeError("control plane already started")
        bin_dir = self.bin_dir
        missing = [b for b in BINARIES if not (bin_dir / b).is_file()]
        if missing:
            raise RuntimeError(f"missing {missing} in {bin_dir}")
        began = time.monotonic()
        try:
            self._start_etcd(bin_dir)
            self._start_apiserver(bin_dir)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _start_etcd(self, bin_dir: Path) -> None:
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self.etcd_url = client
        etcd = Process(
            [
                str(bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",  # throwaway data: skip fsync
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        self._procs.append(etcd)

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return b'"health":"true"' in resp.read()

        etcd.wait_until(healthy, self.start_timeout)

    def _write_credentials(self) -> tuple[Path, Path, Path]:
        """Client CA + admin client certificate, service-account key; returns (client CA, SA pub, SA key)."""
        certs.ensure_ca(self.client_ca_dir, "modelpin-test-client-ca")
        # the apiserver reads O= as the group: system:masters may do anything, RBAC or not
        certs.issue_client(self.client_ca_dir, "admin", days=1, stem="admin", organization="system:masters")

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_priv, sa_pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        _write_key(sa_key, sa_priv)
        sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return self.client_ca_dir / "ca.crt", sa_pub, sa_priv

    def _write_kubeconfig(self) -> None:
        user = {"client-certificate": str(self.admin_cert), "client-key": str(self.admin_key)}
        write_single_user(self.kubeconfig, self.server, self.ca_file, user, cluster="modelpin-e2e", user_name="admin")

    def _write_admission_config(self) -> Path:
        """Webhook admission that presents a client certificate to every webhook, as a hardened cluster does.

        ``self.webhook_client.ca`` is then what ``modelpin serve --client-ca`` trusts. A webhook that
        asks for no certificate is unaffected.
        """
        self.webhook_client = client_pair(self.workdir / "webhook-client")
        kubeconfig = self.workdir / "webhook-client.kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    # "*": for every webhook host (the apiserver matches users by host[:port], then "*")
                    "users": [
                        {
                            "name": "*",
                            "user": {
                                "client-certificate": str(self.webhook_client.cert),
                                "client-key": str(self.webhook_client.key),
                            },
                        }
                    ],
                }
            )
        )
        webhook_config = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(kubeconfig),
        }
        admission = self.workdir / "admission-config.yaml"
        admission.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "AdmissionConfiguration",
                    "plugins": [
                        {"name": name, "configuration": webhook_config}
                        for name in ("MutatingAdmissionWebhook", "ValidatingAdmissionWebhook")
                    ],
                }
            )
        )
        return admission

    def _start_apiserver(self, bin_dir: Path) -> None:
        client_ca, sa_pub, sa_priv = self._write_credentials()
        admission_config = self._write_admission_config()
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self._write_kubeconfig()
        apiserver = Process(
            [
                str(bin_dir / "kube-apiserver"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={self.cert_dir}",
                f"--client-ca-file={client_ca}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_priv}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # On top of the defaults (which already include all three in 1.34).
                "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
                # No controller-manager creates the "default" ServiceAccount, so pods would be refused (as envtest).
                "--disable-admission-plugins=ServiceAccount",
                f"--admission-control-config-file={admission_config}",
                *self.apiserver_args,
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._procs.append(apiserver)
        apiserver.wait_until(self._ready, self.start_timeout)

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.admin_cert), str(self.admin_key))
        with urllib.request.urlopen(f"{self.server}/readyz", timeout=5, context=context) as resp:
            return bool(resp.status == 200)

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver and start it again on the same port with the same credentials; etcd keeps its data."""
        (old,) = [p for p in self._procs if p.name == "kube-apiserver"]
        old.stop()
        self._procs.remove(old)
        time.sleep(down_seconds)
        log = self.workdir / "kube-apiserver.log"
        log.rename(self.workdir / f"kube-apiserver.{int(time.time())}.log")
        apiserver = Process(old.argv, log)
        self._procs.append(apiserver)
        apiserver.wait_until(self._ready, self.start_timeout)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane as the admin user."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def logs(self, lines: int = 40) -> str:
        """The tail of each process's log, for failure messages."""
        return "\n".join(f"--- {p.name} ---\n{p.tail(lines)}" for p in self._procs)

    def stop(self) -> None:
        while self._procs:
            self._procs.pop().stop()  # apiserver first, then etcd
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
