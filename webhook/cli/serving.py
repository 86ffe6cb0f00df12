"""The server-side subcommands: serve, render, certs, reconcile, mlflow-webhook."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.cli.flags import build_resolver, prepare_embedded, prepare_embedded_quietly, settings_from
from webhook.tools import certs, embedded

if TYPE_CHECKING:
    pass


def cmd_serve(args: argparse.Namespace) -> int:
    from webhook.edge.server import run

    settings = settings_from(args)
    if args.client_ca is not None:
        if not args.client_ca.is_file():
            print(f"error: --client-ca {args.client_ca} is not a file", file=sys.stderr)
            return 2
        settings.tls_client_ca = args.client_ca
    used_embedded = prepare_embedded(settings)
    cert, key = args.tls_cert, args.tls_key
    if (cert is None) != (key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if cert is None:
        bundle = embedded.ensure_certs()
        cert, key = bundle.cert, bundle.key
        print(
            f"self-signed serving certificate: {bundle.cert} (key {bundle.key}, CA {bundle.ca_cert})",
            flush=True,
        )
        if used_embedded:
            sample = embedded.write_sample()
            host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            print(
                "try: curl --cacert "
                f"{bundle.ca_cert} -H 'Content-Type: application/json' --data @{sample} "
                f"https://{host}:{args.port}/mutate",
                flush=True,
            )
    run(
        settings,
        build_resolver(settings),
        host=args.host,
        port=args.port,
        cert=Path(cert),
        key=Path(key),
        log_level=args.log_level,
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from webhook.tools.render import (
        RenderError,
        dump_documents,
        load_documents,
        read_source,
        render_documents,
        with_servability,
    )

    if not (args.config or args.registry or args.demo):
        # the demo registry belongs to `make run`; rendering against it by accident would print made-up URIs
        print(
            "error: render needs a registry: pass --config FILE (or set MODELPIN_CONFIG) or "
            "--registry NAME=TRACKING_URI, or --demo for the embedded demo registry",
            file=sys.stderr,
        )
        return 2
    # MLflow's INFO lines (store migrations, ...) are not render's output; MLflow sets its loggers'
    # level when imported (later, if at all), from this variable
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings = with_servability(settings_from(args), args.servability)
    if args.demo:
        prepare_embedded_quietly(settings)
    try:
        docs = load_documents(read_source(args.file))
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    async def go() -> tuple[list[object], list[str], list[str]]:
        # render runs where the files are: local model folders are read for the servability check
        resolver = build_resolver(settings, read_local=True)
        try:
            return await render_documents(docs, namespace=args.namespace, resolver=resolver)
        finally:
            await resolver.aclose()

    out, errors, warnings = asyncio.run(go())
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if errors:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(dump_documents(out))
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    names = certs.service_names(args.service or ["modelpin-webhook", "modelpin-reconciler"], args.namespace)
    names += args.san
    out = Path(args.out)
    bundle = certs.issue(out, names, days=args.days)
    print(f"CA: {bundle.ca_cert}\nserving certificate: {bundle.cert}\nkey: {bundle.key}")
    print(f"SANs: {', '.join(names)}")
    if args.kustomize:
        secret, patch = certs.write_kustomize(bundle, Path(args.kustomize), args.secret_name, args.namespace)
        print(f"wrote {secret} and {patch}")
    return 0


def tls_pair(args: argparse.Namespace) -> tuple[Path, Path] | None:
    cert, key = args.tls_cert, args.tls_key
    if (cert is None) != (key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return None
    if cert is None:
        bundle = embedded.ensure_certs()
        print(f"self-signed serving certificate: {bundle.cert} (key {bundle.key}, CA {bundle.ca_cert})", flush=True)
        return bundle.cert, bundle.key
    return Path(cert), Path(key)


def cmd_reconcile(args: argparse.Namespace) -> int:
    import socket

    from webhook.edge.reconciler_app import ReconcilerState, create_app
    from webhook.edge.server import build_server
    from webhook.reconcile.deliveries import Verifier
    from webhook.reconcile.kube import Kind, Kube, load_configuration
    from webhook.reconcile.leadership import LeaderLease
    from webhook.reconcile.reconciler import Reconciler

    settings = settings_from(args)
    if args.poll_interval is not None:
        settings.reconciler.poll_interval_seconds = args.poll_interval
    prepare_embedded(settings)
    pair = tls_pair(args)
    if pair is None:
        return 2
    rc = settings.reconciler
    # Only the configuration is loaded here (on a loop of its own); the client's aiohttp session
    # belongs to the loop that makes it, so Kube makes it on uvicorn's loop at first use.
    kube = Kube(
        asyncio.run(load_configuration(args.kubeconfig)),
        rc.apiserver_timeout_seconds,
        rc.watch_timeout_seconds,
        rc.list_page_size,
    )
    identity = args.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    secret = rc.mlflow_secret()
    try:
        lease = LeaderLease(
            kube,
            rc.lease_namespace,
            rc.lease_name,
            identity,
            rc.lease_duration_seconds,
            rc.lease_renew_deadline_seconds,
            rc.lease_retry_period_seconds,
            rc.apiserver_timeout_seconds,
        )
    except ValueError as exc:
        print(f"modelpin reconcile: {exc}", file=sys.stderr)
        return 2
    state = ReconcilerState(
        reconciler=Reconciler(build_resolver(settings), kube, [Kind.parse(k) for k in rc.kinds]),
        lease=lease,
        verifier=(
            Verifier(
                secret.get_secret_value(),
                rc.max_delivery_age_seconds,
                max_future_seconds=rc.max_delivery_future_seconds,
            )
            if secret
            else None
        ),
        max_body=rc.max_delivery_bytes,
    )
    if secret is None:
        print(f"no MLflow webhook secret in ${rc.mlflow_secret_env}: MLflow events are off, polling only", flush=True)
    build_server(
        create_app(state),
        state,
        host=args.host,
        port=args.port,
        cert=pair[0],
        key=pair[1],
        log_level=args.log_level,
        limit_concurrency=settings.limit_concurrency,
        read_timeout=settings.request_read_timeout_seconds,
    ).run()
    if state.failed is not None:
        print(f"modelpin reconcile: the work loop died: {state.failed}", file=sys.stderr)
        return 1
    return 0


def cmd_mlflow_webhook(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from webhook.reconcile.deliveries import EVENTS

    secret = os.environ.get(args.secret_env, "")
    if not secret:
        print(f"error: set the shared secret in ${args.secret_env}", file=sys.stderr)
        return 2
    client = MlflowClient(tracking_uri=args.tracking_uri)
    hook = client.create_webhook(name=args.name, url=args.url, events=list(EVENTS), secret=secret)  # type: ignore[arg-type]
    print(f"registered MLflow webhook {hook.webhook_id} -> {args.url} for {', '.join(EVENTS)}")
    return 0


# --- the operator's commands: status, history, hold, release ------------------------------------
