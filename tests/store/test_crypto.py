"""Tests for ``tether/store/crypto.py``: sealing, binding, key rings, key files, masking."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from tether.errors import ConfigurationError, DecryptionError
from tether.store.crypto import (
    FORMAT_VERSION,
    KeyRing,
    SecretRef,
    add_key_to_file,
    generate_key,
    load_key_file,
    mask,
)

REF = SecretRef("connection", ("s1", "shared"), "access_token")
SECRET = "at-0123456789-secret"


def test_round_trip_and_format() -> None:
    ring = KeyRing.generate()
    token = ring.encrypt(SECRET, REF)
    version, kid, _body = token.split(".")
    assert version == FORMAT_VERSION
    assert kid == ring.primary_key_id
    assert SECRET not in token
    assert ring.decrypt(token, REF) == SECRET
    # A fresh nonce each time.
    assert ring.encrypt(SECRET, REF) != token


@pytest.mark.parametrize(
    "other",
    [
        SecretRef("connection", ("s1", "shared"), "refresh_token"),  # another column
        SecretRef("connection", ("s1", "user-1"), "access_token"),  # another row
        SecretRef("connection", ("s2", "shared"), "access_token"),  # another server
        SecretRef("credential", ("s1", "shared"), "access_token"),  # another table
        # ':' inside ids cannot be used to forge the same associated data.
        SecretRef("connection", ("s1:shared",), "access_token"),
    ],
)
def test_moved_ciphertext_fails_and_names_the_record(other: SecretRef) -> None:
    ring = KeyRing.generate()
    token = ring.encrypt(SECRET, REF)
    with pytest.raises(DecryptionError) as caught:
        ring.decrypt(token, other)
    message = str(caught.value)
    assert other.describe() in message
    assert SECRET not in message
    assert token not in message


def test_tampering_fails() -> None:
    ring = KeyRing.generate()
    token = ring.encrypt(SECRET, REF)
    head, body = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    flipped = head + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (flipped, head + ".", head + ".!!!", "v9." + token[3:], "plaintext"):
        with pytest.raises(DecryptionError):
            ring.decrypt(bad, REF)


def test_rotation_with_a_key_ring() -> None:
    old_key, new_key = generate_key(), generate_key()
    old = KeyRing.from_string(old_key)
    token = old.encrypt(SECRET, REF)

    both = KeyRing.from_string(f"{new_key}, {old_key}")
    assert both.key_ids == (
        KeyRing.from_string(new_key).primary_key_id,
        old.primary_key_id,
    )
    assert both.decrypt(token, REF) == SECRET
    assert both.needs_rotation(token)
    resealed = both.reseal(token, REF)
    assert resealed is not None
    assert not both.needs_rotation(resealed)
    assert both.reseal(resealed, REF) is None  # idempotent

    only_new = KeyRing.from_string(new_key)
    assert only_new.decrypt(resealed, REF) == SECRET
    with pytest.raises(DecryptionError, match="not in the key ring") as caught:
        only_new.decrypt(token, REF)
    assert caught.value.hint is not None


def test_key_string_forms() -> None:
    raw = os.urandom(32)
    standard = base64.b64encode(raw).decode()
    urlsafe_unpadded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    ring = KeyRing.from_string(SecretStr(standard))
    assert KeyRing.from_string(urlsafe_unpadded).key_ids == ring.key_ids
    assert KeyRing([raw]).key_ids == ring.key_ids
    assert raw.hex() not in repr(ring)
    assert standard not in repr(ring)


@pytest.mark.parametrize(
    "value",
    ["", " , ", "not base64 !!", base64.b64encode(b"short").decode()],
)
def test_bad_key_strings(value: str) -> None:
    with pytest.raises(ConfigurationError):
        KeyRing.from_string(value)


def test_duplicate_keys_rejected() -> None:
    key = generate_key()
    with pytest.raises(ConfigurationError, match="twice"):
        KeyRing.from_string(f"{key},{key}")


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "tether.key"
    ring = load_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path).key_ids == ring.key_ids
    token = ring.encrypt(SECRET, REF)
    assert load_key_file(path).decrypt(token, REF) == SECRET


def test_key_file_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_key_file(tmp_path / "absent.key", create=False)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_file_with_open_permissions_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tether.key"
    load_key_file(path)
    path.chmod(mode)
    with pytest.raises(ConfigurationError) as caught:
        load_key_file(path)
    assert caught.value.hint == f"run `chmod 600 {path}`"


def test_add_key_to_file_keeps_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "tether.key"
    old = load_key_file(path)
    token = old.encrypt(SECRET, REF)
    new = add_key_to_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert new.key_ids[1:] == old.key_ids
    assert new.primary_key_id != old.primary_key_id
    assert load_key_file(path).decrypt(token, REF) == SECRET


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("", "••••••••"),
        ("short", "••••••••"),
        ("elevenchars", "••••••••"),
        ("twelve-chars", "••••hars"),
        (SecretStr("sk-live-0123456789abcd"), "••••abcd"),
    ],
)
def test_mask(value: str | SecretStr | None, expected: str) -> None:
    assert mask(value) == expected
