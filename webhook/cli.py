"""The ``modelpin`` command: serve, render, certs, reconcile; the operator's status, history, hold, release, rollout."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from webhook.config import RegistryConfig, Settings, load_settings
from webhook.registry.clients import open_registry
from webhook.registry.resolver import Resolver
from webhook.tools import certs, embedded

if TYPE_CHECKING:
    from webhook.ops.credentials import Credentials
    from webhook.ops.kinds import Named
    from webhook.reconcile.kube import Kube

log = logging.getLogger("modelpin")
# each apiserver call of history, hold and release
KUBE_TIMEOUT_SECONDS = 10.0


def _registry_flag(value: str) -> tuple[str, str]:
    name, sep, uri = value.partition("=")
    if not sep or not name or not uri:
        raise argparse.ArgumentTypeError(f"expected NAME=TRACKING_URI, got {value!r}")
    return name, uri


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("MODELPIN_CONFIG"),
        help="YAML configuration file",
    )
    parser.add_argument(
        "--registry",
        action="append",
        type=_registry_flag,
        default=[],
        metavar="NAME=TRACKING_URI",
        help="add or override a registry's tracking URI (repeatable)",
    )
    parser.add_argument("--default-selector", help="selector for bare model names, e.g. @champion or /Production")
    parser.add_argument("--default-profile", help="profile for models:/ URIs (default: auto)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def settings_from(args: argparse.Namespace) -> Settings:
    config = Path(args.config) if args.config else None
    settings = load_settings(config, default_selector=args.default_selector, default_profile=args.default_profile)
    for name, uri in args.registry:
        existing = settings.registries.get(name)
        settings.registries[name] = (
            existing.model_copy(update={"tracking_uri": uri}) if existing else RegistryConfig(tracking_uri=uri)
        )
    for line in cleartext_credentials(settings):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return settings


def cleartext_credentials(settings: Settings) -> list[str]:
    """A warning per registry whose credentials would cross the network unencrypted."""
    return [
        f"registry {name!r} sends its credentials over plain http ({cfg.tracking_uri}); use https"
        for name, cfg in settings.registries.items()
        if cfg.tracking_uri.startswith("http://") and (cfg.token() is not None or cfg.basic_auth() is not None)
    ]


def build_resolver(settings: Settings, *, read_local: bool = False) -> Resolver:
    registries = {name: open_registry(name, cfg) for name, cfg in settings.registries.items()}
    return Resolver(settings, registries, read_local=read_local)


def _prepare_embedded(settings: Settings) -> bool:
    if settings.registries:
        return False
    for line in embedded.prepare(settings):
        print(line, flush=True)
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    from webhook.edge.server import run

    settings = settings_from(args)
    if args.client_ca is not None:
        if not args.client_ca.is_file():
            print(f"error: --client-ca {args.client_ca} is not a file", file=sys.stderr)
            return 2
        settings.tls_client_ca = args.client_ca
    used_embedded = _prepare_embedded(settings)
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
        _prepare_embedded_quietly(settings)
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


def _prepare_embedded_quietly(settings: Settings) -> None:
    if not settings.registries:
        for line in embedded.prepare(settings):
            print(line, file=sys.stderr)


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


def _tls_pair(args: argparse.Namespace) -> tuple[Path, Path] | None:
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
    _prepare_embedded(settings)
    pair = _tls_pair(args)
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


def _target(text: str) -> tuple[Named, str]:
    from webhook.ops.kinds import KindError, parse_target

    try:
        return parse_target(text)
    except KindError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _duration(text: str) -> dt.timedelta:
    from webhook.ops.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_kube_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config, else in-cluster")
    parser.add_argument("--context", help="the kubeconfig context to use (default: its current context)")


async def _credentials(args: argparse.Namespace) -> Credentials | None:
    from webhook.ops.credentials import CredentialsError, load

    try:
        return await load(args.kubeconfig, args.context)
    except CredentialsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _kube_failure(exc: BaseException, what: str) -> int:
    from webhook.reconcile.kube import ApiException, describe

    if isinstance(exc, ApiException) and exc.status == 404:
        print(f"error: {what} not found", file=sys.stderr)
    elif isinstance(exc, ApiException) and exc.status in (401, 403):
        print(f"error: {what}: the apiserver refused ({describe(exc)})", file=sys.stderr)
    else:
        print(f"error: {what}: {describe(exc)}", file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    from webhook.ops import output, status
    from webhook.reconcile.kube import KUBE_ERRORS, Kind, Kube

    settings = settings_from(args)
    _prepare_embedded_quietly(settings)
    try:
        kinds = [Kind.parse(k) for k in settings.reconciler.kinds]
    except ValueError:
        print(
            f"error: reconciler.kinds: expected group/version/plural, got {settings.reconciler.kinds}", file=sys.stderr
        )
        return 2

    async def go() -> int:
        creds = await _credentials(args)
        if creds is None:
            return 2
        namespace = None if args.all_namespaces else (args.namespace or creds.namespace)
        rc = settings.reconciler
        kube = Kube(creds.configuration, rc.apiserver_timeout_seconds, page_size=rc.list_page_size)
        resolver = build_resolver(settings)
        try:
            rows = await status.collect(kube, resolver, settings, kinds, namespace, dt.datetime.now(dt.UTC))
        except KUBE_ERRORS as exc:
            return _kube_failure(exc, "listing managed objects")
        finally:
            await resolver.aclose()
            await kube.aclose()
        rows = [r for r in rows if (args.model is None or r.model == args.model) and args.state in (None, r.state)]
        if not rows and args.output in ("table", "wide"):
            where = "any namespace" if namespace is None else f"namespace {namespace}"
            print(f"No managed objects found in {where}.", file=sys.stderr)
        else:
            sys.stdout.write(output.status(rows, args.output, namespace is None))
        return 1 if args.fail_if_behind and any(r.state == "behind" for r in rows) else 0

    return asyncio.run(go())


def _on_object(
    args: argparse.Namespace,
    act: Callable[[Kube, Credentials, str], Awaitable[int]],
    refusals: tuple[type[Exception], ...] = (),
) -> int:
    """Run ``act(kube, credentials, namespace)`` on the object ``args.target`` names, with the operator's
    credentials; an apiserver failure, or one of ``refusals``, is said as an error about that object (exit 1).
    """
    from webhook.reconcile.kube import KUBE_ERRORS, Kube

    named, name = args.target

    async def go() -> int:
        creds = await _credentials(args)
        if creds is None:
            return 2
        namespace = args.namespace or creds.namespace
        kube = Kube(creds.configuration, KUBE_TIMEOUT_SECONDS)
        try:
            return await act(kube, creds, namespace)
        except refusals as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KUBE_ERRORS as exc:
            return _kube_failure(exc, f"{named.singular}/{name} in {namespace}")
        finally:
            await kube.aclose()

    return asyncio.run(go())


def cmd_history(args: argparse.Namespace) -> int:
    from webhook.ops import holds, output

    named, name = args.target

    async def act(kube: Kube, creds: Credentials, namespace: str) -> int:
        history, problem = await holds.history(kube, named, namespace, name)
        if problem:
            print(f"warning: {problem}", file=sys.stderr)
        entries = [(pointer, e) for pointer, items in sorted(history.items()) for e in items]
        if not entries and args.output == "table":
            print(f"No history recorded on {named.singular}/{name} in {namespace}.", file=sys.stderr)
            return 0
        sys.stdout.write(output.history(entries, args.output))
        return 0

    return _on_object(args, act)


def cmd_hold(args: argparse.Namespace) -> int:
    from webhook.ops import holds
    from webhook.ops.durations import parse_until

    named, name = args.target
    now = dt.datetime.now(dt.UTC)
    until: dt.datetime | None = now + args.duration if args.duration is not None else None
    if args.until is not None:
        try:
            until = parse_until(args.until, now)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    which = {"previous": args.previous, "version": args.version, "model": args.model}

    async def act(kube: Kube, creds: Credentials, namespace: str) -> int:
        made = await holds.hold(
            kube, named, namespace, name, reason=args.reason, now=now, until=until, by=creds.user, **which
        )
        print(holds.describe_hold(named, namespace, name, made))
        return 0

    return _on_object(args, act, (holds.HoldError,))


def cmd_release(args: argparse.Namespace) -> int:
    from webhook.ops import holds

    named, name = args.target

    async def act(kube: Kube, creds: Credentials, namespace: str) -> int:
        existed, _ = await holds.release(kube, named, namespace, name)
        what = "released" if existed else "no hold on"
        print(f"{what} {named.singular}/{name} in {namespace}")
        return 0

    return _on_object(args, act)


def cmd_rollout(args: argparse.Namespace) -> int:
    from webhook.ops import rollout
    from webhook.reconcile.rollouts import Command

    named, name = args.target
    cmd = Command(args.action)

    async def act(kube: Kube, creds: Credentials, namespace: str) -> int:
        asked = await rollout.request(kube, named, namespace, name, cmd, by=creds.user, now=dt.datetime.now(dt.UTC))
        if args.no_wait:
            print(f"{cmd} requested for {named.singular}/{name} in {namespace}")
            return 0
        state = await rollout.carried_out(kube, named, namespace, name, asked, args.timeout)
        if state is None:
            print(
                f"error: {cmd} requested for {named.singular}/{name} in {namespace}, and not carried out within "
                f"{args.timeout:g}s (is the reconciler running and leading?)",
                file=sys.stderr,
            )
            return 1
        print(rollout.describe(named, namespace, name, state))
        return 0

    return _on_object(args, act, (rollout.RolloutError,))


def _add_ops_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from webhook.ops.status import STATES

    status = sub.add_parser("status", help="each managed field: running version, registry version, state, serving")
    scope = status.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="default: the context's namespace")
    scope.add_argument("-A", "--all-namespaces", action="store_true")
    status.add_argument("--model", help="only fields referencing this registered model")
    status.add_argument("--state", choices=STATES, help="only fields in this state")
    status.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    status.add_argument("--fail-if-behind", action="store_true", help="exit 1 when a field is behind its registry")
    _add_kube_flags(status)
    _add_config_flags(status)
    status.set_defaults(func=cmd_status)

    history = sub.add_parser("history", help="an object's recorded version changes, per field")
    history.add_argument("target", type=_target, metavar="KIND/NAME")
    history.add_argument("-n", "--namespace", help="default: the context's namespace")
    history.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    _add_kube_flags(history)
    history.set_defaults(func=cmd_history)

    hold = sub.add_parser("hold", help="keep an object's versions (or pin earlier ones) whatever the registry says")
    hold.add_argument("target", type=_target, metavar="KIND/NAME")
    hold.add_argument("-n", "--namespace", help="default: the context's namespace")
    hold.add_argument("--reason", required=True, help="why: shown by status and in Events")
    which = hold.add_mutually_exclusive_group()
    which.add_argument("--previous", action="store_true", help="pin each field to its previous version (history)")
    which.add_argument("--version", metavar="N", help="pin the fields to registered version N")
    hold.add_argument("--model", help="only the fields referencing this model")
    how_long = hold.add_mutually_exclusive_group()
    how_long.add_argument("--for", dest="duration", type=_duration, metavar="DURATION", help="e.g. 20s, 15m, 2h, 1d")
    how_long.add_argument("--until", metavar="TIME", help="RFC 3339, e.g. 2026-05-01T18:00:00Z")
    _add_kube_flags(hold)
    hold.set_defaults(func=cmd_hold)

    release = sub.add_parser("release", help="remove an object's hold: it follows the registry again")
    release.add_argument("target", type=_target, metavar="KIND/NAME")
    release.add_argument("-n", "--namespace", help="default: the context's namespace")
    _add_kube_flags(release)
    release.set_defaults(func=cmd_release)

    roll = sub.add_parser("rollout", help="pause, resume, promote or abort an object's rollout (the reconciler acts)")
    roll.add_argument("action", choices=["pause", "resume", "promote", "abort"])
    roll.add_argument("target", type=_target, metavar="KIND/NAME")
    roll.add_argument("-n", "--namespace", help="default: the context's namespace")
    roll.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reconciler (default 30)")
    roll.add_argument("--no-wait", action="store_true", help="write the request and return")
    _add_kube_flags(roll)
    roll.set_defaults(func=cmd_rollout)


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
    _add_config_flags(serve)
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
    _add_config_flags(render)
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
    _add_config_flags(rec)
    rec.set_defaults(func=cmd_reconcile)

    hook = sub.add_parser("mlflow-webhook", help="register the reconciler's endpoint as an MLflow webhook")
    hook_sub = hook.add_subparsers(dest="action", required=True)
    install = hook_sub.add_parser("install")
    install.add_argument("--tracking-uri", required=True)
    install.add_argument("--url", required=True, help="https://<reconciler>/mlflow/events")
    install.add_argument("--name", default="modelpin")
    install.add_argument("--secret-env", default="MODELPIN_MLFLOW_WEBHOOK_SECRET")
    install.set_defaults(func=cmd_mlflow_webhook)
    _add_ops_parsers(sub)
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
