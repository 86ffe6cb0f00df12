"""The operator's subcommands: status, history, hold, release, rollout."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from webhook.cli.flags import add_config_flags, build_resolver, prepare_embedded_quietly, settings_from

if TYPE_CHECKING:
    from webhook.ops.credentials import Credentials
    from webhook.ops.kinds import Named
    from webhook.reconcile.kube import Kube

# each apiserver call of history, hold and release
KUBE_TIMEOUT_SECONDS = 10.0


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
    prepare_embedded_quietly(settings)
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


def add_ops_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    add_config_flags(status)
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
