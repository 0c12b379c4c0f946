"""The key file: crash-safe creation, racing first starts, and damaged files refused.

Losing the key loses every grant, so a key file is created atomically (written and
fsynced under a temporary name, then hard-linked into place) and is never replaced once
it exists, even when it is empty or damaged. The race and crash claims are proven with
separate OS processes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tether.errors import ConfigurationError
from tether.store.crypto import KeyRing, add_key_to_file, generate_key, load_key_file

# A child process: say "ready", wait at the barrier (a byte on stdin), load the key file,
# print its primary key id. Every child is fully started before any of them proceeds.
_RACER = """
import sys
from tether.store.crypto import load_key_file
print("ready", flush=True)
sys.stdin.read(1)
print(load_key_file(sys.argv[1]).primary_key_id, flush=True)
"""

# A child that dies (as kill -9 would: no cleanup, no atexit) at the named step of
# creating the key file.
_CRASHER = """
import os, sys
from tether.store import crypto
step = sys.argv[2]
if step == "fsync":
    os.fsync = lambda fd: os._exit(9)
elif step == "link":
    os.link = lambda src, dst: os._exit(9)
crypto.load_key_file(sys.argv[1])
"""


def _race(path: Path, processes: int) -> list[str]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:  # open the barrier for all of them at once
        assert child.stdin is not None
        child.stdin.write("g")
        child.stdin.flush()
    ids = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        ids.append(out.strip())
    return ids


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path, round_: int) -> None:
    path = tmp_path / f"home-{round_}" / "keys"
    ids = _race(path, 8)
    assert len(set(ids)) == 1, ids
    assert load_key_file(path, create=False).primary_key_id == ids[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # No temporary file is left behind by the processes that lost the race.
    assert [p.name for p in path.parent.iterdir()] == ["keys"]


@pytest.mark.parametrize("step", ["fsync", "link"])
def test_a_crash_while_creating_leaves_no_key_file(tmp_path: Path, step: str) -> None:
    path = tmp_path / "keys"
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(path), step],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert crashed.returncode == 9
    # The name is either absent or complete; here the crash came before the link.
    assert not path.exists()
    ring = load_key_file(path)  # the next start creates a whole key
    assert load_key_file(path).key_ids == ring.key_ids


def _refused(path: Path) -> ConfigurationError:
    before = path.read_bytes()
    with pytest.raises(ConfigurationError) as caught:
        load_key_file(path)
    assert path.read_bytes() == before  # no key was generated over it
    error = caught.value
    assert str(path) in error.message
    assert error.hint is not None
    assert "restore" in error.hint
    assert "TETHER_ENCRYPTION_KEYS" in error.hint
    return error


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"# Tether encryption keys\n\n", "empty"),
        (generate_key()[:20].encode() + b"\n", "truncated"),
        ("\u00e9t\u00e9\n".encode(), "non-ASCII"),
        (b"\xff\xfe\x00garbage", "non-ASCII"),
        (b"not a key at all!\n", "not base64"),
        (generate_key().encode() + b"\n" + generate_key()[:-8].encode(), "line 2"),
    ],
    ids=["empty", "comment-only", "truncated", "utf8", "binary", "garbage", "second"],
)
def test_a_damaged_key_file_is_refused(tmp_path: Path, data: bytes, says: str) -> None:
    path = tmp_path / "keys"
    _write(path, data)
    assert says in _refused(path).message


def test_a_damaged_key_file_is_refused_by_keys_add(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    _write(path, b"")
    with pytest.raises(ConfigurationError, match="empty"):
        add_key_to_file(path)
    assert path.read_bytes() == b""


def test_keys_add_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        add_key_to_file(tmp_path / "keys")
    assert not (tmp_path / "keys").exists()


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.mkdir()
    with pytest.raises(ConfigurationError, match="not a regular file"):
        load_key_file(path)


def test_an_unreadable_key_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys"
    load_key_file(path)

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    # Injected: the suite may run as root, which reads any file whatever its mode.
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigurationError, match="cannot read key file"):
        load_key_file(path)


def test_the_loser_of_a_creation_race_reads_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys"
    winner = generate_key()
    real_link = os.link

    def link_after_another_process(src: str, dst: str) -> None:
        _write(Path(dst), f"{winner}\n".encode())  # the other process got there first
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link_after_another_process)
    ring = load_key_file(path)
    assert ring.key_ids == KeyRing.from_string(winner).key_ids
    assert [p.name for p in tmp_path.iterdir()] == ["keys"]


def test_a_file_system_without_hard_links_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: str, dst: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(ConfigurationError, match="hard links") as caught:
        load_key_file(tmp_path / "keys")
    assert caught.value.hint is not None
    assert "TETHER_KEY_FILE" in caught.value.hint
    assert list(tmp_path.iterdir()) == []


def test_add_key_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    old = load_key_file(path)
    new = add_key_to_file(path)
    assert new.key_ids[1:] == old.key_ids
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["keys"]


def test_an_existing_home_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    load_key_file(tmp_path / "keys")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750
