from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client import REGISTRY as PROMETHEUS

from tests.support.fakes import bump_mtime, served_certificate
from webhook.edge.cert_reload import CertReloader
from webhook.tools import certs


def reload_count(result: str) -> float:
    return PROMETHEUS.get_sample_value("modelpin_cert_reloads_total", {"result": result}) or 0.0


def serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def server(tmp_path: Path) -> tuple[ssl.SSLContext, CertReloader, certs.Bundle]:
    bundle = certs.issue(tmp_path, ["localhost"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(bundle.cert, bundle.key)
    return context, CertReloader(context, bundle.cert, bundle.key), bundle


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_nothing_changed(tmp_path: Path) -> None:
    _, reloader, _ = server(tmp_path)
    assert reloader.check() is False
    assert reloader.problems() == []


def test_reload_after_rotation(tmp_path: Path) -> None:
    context, reloader, bundle = server(tmp_path)
    old = serial_of(bundle.cert)
    assert serial(served_certificate(context, bundle.ca_cert)) == old
    before = reload_count("ok")

    certs.issue(tmp_path, ["localhost"])
    bump_mtime(bundle.cert, bundle.key)
    new = serial_of(bundle.cert)
    assert new != old
    assert serial(served_certificate(context, bundle.ca_cert)) == old  # not before check()
    assert reloader.check() is True
    assert serial(served_certificate(context, bundle.ca_cert)) == new
    assert reload_count("ok") - before == 1
    assert reloader.check() is False  # seen

    certs.issue(tmp_path, ["localhost"])
    bump_mtime(bundle.cert, bundle.key, seconds=2)
    assert reloader.check() is True
    assert serial(served_certificate(context, bundle.ca_cert)) == serial_of(bundle.cert)


def replace_file(source: Path, target: Path) -> None:
    """Swap ``target`` for a copy of ``source`` atomically, with a distinct mtime."""
    tmp = target.with_suffix(".new")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    bump_mtime(target)


def test_broken_pair_is_ignored_until_completed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    context, reloader, bundle = server(tmp_path / "live")
    staged = certs.issue(tmp_path / "staged", ["localhost"])
    before = reload_count("error")

    replace_file(staged.cert, bundle.cert)  # half a rotation: the new certificate with the old key
    with caplog.at_level(logging.WARNING, logger="modelpin.tls"):
        assert reloader.check() is False
    assert "serving certificate not reloaded: the key does not match the certificate" in caplog.text
    assert reload_count("error") - before == 1
    assert reloader.check() is False  # tried again on the next tick, still broken
    assert reload_count("error") - before == 2

    replace_file(staged.key, bundle.key)  # the key arrives: the pair is whole again
    assert reloader.check() is True
    assert serial(served_certificate(context, staged.ca_cert)) == serial_of(staged.cert)


def test_new_key_before_new_cert_keeps_serving_the_old_pair(tmp_path: Path) -> None:
    context, reloader, bundle = server(tmp_path / "live")
    old = serial_of(bundle.cert)
    staged = certs.issue(tmp_path / "staged", ["localhost"])
    replace_file(staged.key, bundle.key)
    assert reloader.check() is False
    assert serial(served_certificate(context, bundle.ca_cert)) == old


def test_new_cert_before_new_key_keeps_serving_the_old_pair(tmp_path: Path) -> None:
    context, reloader, bundle = server(tmp_path / "live")
    old = serial_of(bundle.cert)
    staged = certs.issue(tmp_path / "staged", ["localhost"])
    replace_file(staged.cert, bundle.cert)
    assert reloader.check() is False
    assert serial(served_certificate(context, bundle.ca_cert)) == old


def test_missing_file_is_not_a_reload(tmp_path: Path) -> None:
    context, reloader, bundle = server(tmp_path)
    errors = reload_count("error")
    bundle.key.unlink()
    assert reloader.check() is False
    assert reload_count("error") == errors  # a file in the middle of a swap is not an error
    assert reloader.problems() == [f"{bundle.key} is missing"]
    assert serial(served_certificate(context, bundle.ca_cert)) == serial_of(bundle.cert)


async def test_watch_polls(tmp_path: Path) -> None:
    context, reloader, bundle = server(tmp_path)
    task = asyncio.create_task(reloader.watch(0.01))
    try:
        certs.issue(tmp_path, ["localhost"])
        bump_mtime(bundle.cert, bundle.key)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if serial(served_certificate(context, bundle.ca_cert)) == serial_of(bundle.cert):
                break
        assert serial(served_certificate(context, bundle.ca_cert)) == serial_of(bundle.cert)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def expiry_metric() -> float | None:
    return PROMETHEUS.get_sample_value("modelpin_certificate_expiry_timestamp_seconds")


def test_expiry_of_the_served_certificate_is_exported_and_follows_rotation(tmp_path: Path) -> None:
    _, reloader, bundle = server(tmp_path)
    first = x509.load_pem_x509_certificate(bundle.cert.read_bytes()).not_valid_after_utc.timestamp()
    assert expiry_metric() == first
    shorter = certs.issue(tmp_path / "next", ["localhost"], days=3)
    shutil.copy(shorter.cert, bundle.cert)
    shutil.copy(shorter.key, bundle.key)
    bump_mtime(bundle.cert, bundle.key)
    assert reloader.check() is True
    rotated = x509.load_pem_x509_certificate(bundle.cert.read_bytes()).not_valid_after_utc.timestamp()
    assert rotated < first
    assert expiry_metric() == rotated


def test_a_swap_between_loads_does_not_reach_the_live_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each file is read once: the files changing while the pair is being loaded (here, the next
    # rotation's certificate arriving before its key) cannot mix two pairs in the live context.
    context, reloader, bundle = server(tmp_path / "live")
    rotated = certs.issue(tmp_path / "live", ["localhost"])
    bump_mtime(rotated.cert, rotated.key)
    wanted = serial_of(rotated.cert)
    following = certs.issue(tmp_path / "following", ["localhost"])
    original = ssl.SSLContext.load_cert_chain
    swapped: list[bool] = []

    def swap_after_first_load(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        if not swapped:
            swapped.append(True)
            replace_file(following.cert, bundle.cert)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", swap_after_first_load)
    assert reloader.check() is True
    monkeypatch.undo()
    assert swapped
    assert serial(served_certificate(context, bundle.ca_cert)) == wanted
    # the half-rotated files are seen as a change, and refused, on the next tick
    assert reloader.check() is False
    assert serial(served_certificate(context, bundle.ca_cert)) == wanted


def test_a_mismatched_pair_is_named(tmp_path: Path) -> None:
    from webhook.edge.cert_reload import PairError, check_pair

    one, other = certs.issue(tmp_path / "a", ["localhost"]), certs.issue(tmp_path / "b", ["localhost"])
    assert check_pair(one.cert.read_bytes(), one.key.read_bytes()).serial_number == serial_of(one.cert)
    with pytest.raises(PairError, match="does not match"):
        check_pair(one.cert.read_bytes(), other.key.read_bytes())
    with pytest.raises(PairError, match="unreadable"):
        check_pair(b"not a certificate", one.key.read_bytes())
