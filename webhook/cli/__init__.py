"""The ``modelpin`` command: serve, render, certs, reconcile; the operator's status, history, hold, release, rollout."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from webhook.cli.flags import add_config_flags, build_resolver, cleartext_credentials, settings_from
from webhook.cli.operating import add_ops_parsers
from webhook.cli.serving import cmd_certs, cmd_mlflow_webhook, cmd_reconcile, cmd_render, cmd_serve
from webhook.tools import certs

__all__ = ["build_resolver", "cleartext_credentials", "main", "parser", "program_name", "settings_from"]


def parser(prog: str = "modelpin") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description=__doc__)
    top.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the admission webhook over HTTPS")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--tls-cert", type=Path, help="serving certificate (PEM); re-read when it changes")
    serve.add_argument("--tls-key", type=Path, help="serving key (PEM)")
    serve.add_argument(
        "--client-ca",
        type=Path,
        help="CA (PEM) whose client certificates /mutate requires (the apiserver's, from its AdmissionConfiguration)",
    )
    add_config_flags(serve)
    serve.set_defaults(func=cmd_serve)

    render = sub.add_parser("render", help="resolve templates in YAML files and print the result")
    render.add_argument(
        "-f", "--file", help="multi-document YAML file, a directory of them, or - for standard input (default)"
    )
    render.add_argument("--namespace", "-n", help="namespace whose policy and default selector apply")
    render.add_argument(
        "--servability",
        choices=("deny", "warn", "off"),
        help="check that each model version has the MLmodel flavor its server loads: deny (the default) fails, "
        "warn reports, off skips; applies to every namespace",
    )
    render.add_argument(
        "--demo", action="store_true", help="without a registry: render against the embedded demo registry"
    )
    add_config_flags(render)
    render.set_defaults(func=cmd_render)

    gen = sub.add_parser("certs", help="create a CA and a serving certificate for the webhook Services")
    gen.add_argument("--out", default="certs", help="directory for ca.crt, ca.key, tls.crt, tls.key")
    gen.add_argument("--service", action="append", help="Service name (repeatable)")
    gen.add_argument("--namespace", default="modelpin-system")
    gen.add_argument("--san", action="append", default=[], help="extra DNS name or IP (repeatable)")
    gen.add_argument("--days", type=int, default=certs.SERVING_DAYS)
    gen.add_argument("--kustomize", help="also write secret.yaml and cabundle-patch.yaml into this overlay")
    gen.add_argument("--secret-name", default="modelpin-webhook-tls")
    gen.set_defaults(func=cmd_certs)

    rec = sub.add_parser("reconcile", help="follow registry changes and have affected objects re-admitted")
    rec.add_argument("--host", default="127.0.0.1")
    rec.add_argument("--port", type=int, default=8444)
    rec.add_argument("--tls-cert", type=Path, help="serving certificate for /mlflow/events (PEM)")
    rec.add_argument("--tls-key", type=Path)
    rec.add_argument("--kubeconfig", help="default: in-cluster, else ~/.kube/config")
    rec.add_argument("--identity", help="lease holder identity (default: $POD_NAME or host-pid)")
    rec.add_argument("--poll-interval", type=float, help="seconds between full compares")
    add_config_flags(rec)
    rec.set_defaults(func=cmd_reconcile)

    hook = sub.add_parser("mlflow-webhook", help="register the reconciler's endpoint as an MLflow webhook")
    hook_sub = hook.add_subparsers(dest="action", required=True)
    install = hook_sub.add_parser("install")
    install.add_argument("--tracking-uri", required=True)
    install.add_argument("--url", required=True, help="https://<reconciler>/mlflow/events")
    install.add_argument("--name", default="modelpin")
    install.add_argument("--secret-env", default="MODELPIN_MLFLOW_WEBHOOK_SECRET")
    install.set_defaults(func=cmd_mlflow_webhook)
    add_ops_parsers(sub)
    return top


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelpin")
    except PackageNotFoundError:
        return "(not installed)"


def program_name(argv0: str) -> str:
    """kubectl runs plugins as ``kubectl-<name>``: usage then reads as the user typed it."""
    return "kubectl modelpin" if Path(argv0).name.startswith("kubectl-modelpin") else "modelpin"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(program_name(sys.argv[0]) if argv is None else "modelpin").parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # one line per outbound request drowns what matters; failures are logged by modelpin itself
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except (ValidationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
