"""The state database survives SIGKILL at any instant; durable writes leave old or new, never a mix."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import time
from pathlib import Path

import pytest

from classbox import storage
from classbox.errors import StateError
from classbox.storage import State

from .conftest import read_acks


def _writer(path: Path, ack_fd: int) -> None:
    """Run in a forked child: read-modify-write forever, acknowledging each write after it returns."""
    state = State(path)
    n = state.get("counter", 0)
    while True:
        n += 1
        with state.transaction() as db:
            db.table("log").insert({"n": n})
            state.set("counter", n)
        os.write(ack_fd, f"{n}\n".encode())


@pytest.mark.slow
def test_state_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    rng = random.Random(1234)
    last_acked = 0
    kills = 0
    while kills < 200:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer
            os.close(r)
            try:
                _writer(path, w)
            finally:
                os._exit(1)
        os.close(w)
        # Let it get going, then kill it somewhere inside a write.
        select.select([r], [], [], 5)
        time.sleep(rng.uniform(0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        acks = read_acks(r)
        os.close(r)
        kills += 1
        last_acked = max([last_acked, *acks])

        state = State(path)  # must load, and must hold every acknowledged write
        counter = state.get("counter", 0)
        with state.transaction() as db:
            logged = [d["n"] for d in db.table("log").all()]
        state.close()
        assert counter >= last_acked, f"kill {kills}: write {last_acked} was acknowledged but lost"
        assert counter <= last_acked + 1
        assert logged == list(range(1, counter + 1)), f"kill {kills}: log and counter disagree"
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(storage.TEMP_SUFFIX)], "temp file left"
    assert last_acked > 200


def test_leftover_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    State(path).set("school", "石门教学点")
    leftover = storage.temp_path_for(path)
    leftover.write_bytes(b'{"half": ')
    state = State(path)
    assert not leftover.exists()
    assert state.get("school") == "石门教学点"


def test_atomic_write_replaces_whole_file_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "secret.key"
    storage.atomic_write(target, b"one", mode=0o600)
    storage.atomic_write(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.key"]


def test_failed_write_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    storage.atomic_write(target, b"old")
    with pytest.raises(RuntimeError), storage.new_file(target) as f:
        f.write(b"new, half")
        raise RuntimeError("disk pulled")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_corrupt_state_file_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="state.json is not valid JSON"):
        State(path)


def test_state_is_valid_json_on_disk(tmp_path: Path) -> None:
    state = State(tmp_path / "state.json")
    state.set("name", "一年级教室")
    doc = json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))
    assert doc["settings"]["1"] == {"key": "name", "value": "一年级教室"}
