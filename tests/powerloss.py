"""Power-loss simulation: from a recorded trace of durable operations, the disk a power cut could leave.

`storage.recording(root)` logs every durable operation under a data directory in order (see
classbox/storage.py): mkdir, create, write (path, offset, bytes), truncate, fsync, rename, unlink and
directory fsync. `Trace` replays such a log onto a snapshot of the directory taken before it, and
`Trace.crash(k, rng)` builds the files a power cut just before operation k could leave. The model,
kept simple on purpose (a superset of what ext4 in its default data=ordered mode can leave):

- Data. A write or truncate followed, before the cut, by an fsync of the same file is on disk. One
  not yet followed by an fsync is, as the rng decides, applied, dropped, or torn: a random prefix of
  its bytes lands, or garbage of its full length does. A dropped truncate leaves the old length.
- Names. A mkdir, create or unlink followed, before the cut, by an fsync of its directory is on disk;
  a rename is once the directory of its new name is fsynced. One not yet so followed is, as the rng
  decides, on disk or undone. A rename is atomic: the file is under its old name or its new one.
- Files are inodes: undoing a create or a rename does not undo the data written to the file, and a
  rename carries whatever the file holds. A file whose directory's mkdir was undone is not there.
- Crash points are the moments just before each fsync, directory fsync and rename, and the end of the
  trace (unsynced writes at the end may still be lost). A cut between two of them leaves nothing a cut
  at the next one cannot.

Each crash state is written out as a fresh directory, which a box then opens as it does at start.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from classbox.storage import Op

CRASH_KINDS = ("fsync", "fsync_dir", "rename")
NEVER = 1 << 62


def parent(path: str) -> str:
    """Return the directory of a path relative to the root ("." for the root itself)."""
    return os.path.dirname(path) or "."


@dataclass
class Disk:
    """What a data directory holds: directories, names pointing at inodes, and each inode's bytes."""

    dirs: set[str] = field(default_factory=lambda: {"."})
    names: dict[str, int] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)
    modes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Disk:
        """Read a real directory into a Disk."""
        disk = cls()
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            for d in dirnames:
                disk.dirs.add(os.path.normpath(os.path.join(rel, d)))
            for name in filenames:
                path = os.path.normpath(os.path.join(rel, name))
                inode = len(disk.data)
                full = os.path.join(dirpath, name)
                disk.names[path] = inode
                disk.data[inode] = Path(full).read_bytes()
                disk.modes[inode] = os.stat(full).st_mode & 0o777
        return disk

    def file(self, path: str) -> bytes | None:
        """Return the bytes under a name, or None."""
        inode = self.names.get(path)
        return None if inode is None else self.data[inode]

    def visible(self) -> Iterator[tuple[str, int]]:
        """Yield (name, inode) of every file whose directories all exist."""
        for path, inode in sorted(self.names.items()):
            d = parent(path)
            while d != "." and d in self.dirs:
                d = parent(d)
            if d == ".":
                yield path, inode

    def write_out(self, root: Path) -> None:
        """Make root a directory holding exactly these files."""
        root.mkdir(parents=True)
        for d in sorted(self.dirs, key=lambda p: p.count("/")):
            if d != "." and (parent(d) == "." or parent(d) in self.dirs) and (root / parent(d)).is_dir():
                (root / d).mkdir()
        for path, inode in self.visible():
            target = root / path
            target.write_bytes(self.data[inode])
            os.chmod(target, self.modes.get(inode, 0o644))


@dataclass(frozen=True)
class Step:
    """One recorded operation with what the replay worked out about it."""

    op: Op
    inode: int            # the file it acts on (-1 for directories)
    durable_at: int       # the index of the fsync that makes it durable (NEVER if none in the trace)


class Trace:
    """A recorded workload over a snapshot, able to build the state a power cut at any crash point leaves."""

    def __init__(self, snapshot: Disk, ops: list[Op]) -> None:
        self.snapshot = snapshot
        self.ops = ops
        self.steps = self._resolve()
        self.crash_points = [i for i, op in enumerate(ops) if op.kind in CRASH_KINDS] + [len(ops)]

    def _resolve(self) -> list[Step]:
        """Replay the trace without a crash: name each op's inode and the fsync that makes it durable."""
        names = dict(self.snapshot.names)
        dirs = set(self.snapshot.dirs)
        next_inode = max(self.snapshot.data, default=-1) + 1
        inodes: list[int] = []
        for i, op in enumerate(self.ops):
            if op.kind == "create":
                names[op.path] = next_inode
                inodes.append(next_inode)
                next_inode += 1
            elif op.kind in ("write", "truncate", "fsync"):
                assert op.path in names, f"op {i}: {op.kind} of {op.path}, which the trace never created"
                inodes.append(names[op.path])
            elif op.kind == "rename":
                assert op.path in names, f"op {i}: rename of {op.path}, which the trace never created"
                names[op.target] = names.pop(op.path)
                inodes.append(names[op.target])
            elif op.kind == "unlink":
                inodes.append(names.pop(op.path, -1))
            elif op.kind == "mkdir":
                dirs.add(op.path)
                inodes.append(-1)
            elif op.kind == "fsync_dir":
                assert op.path in dirs, f"op {i}: fsync of directory {op.path}, which does not exist"
                inodes.append(-1)
            else:
                raise AssertionError(f"op {i}: unknown kind {op.kind}")
        # Walk backwards keeping the next fsync of every inode and every directory.
        next_fsync: dict[int, int] = {}
        next_dir_fsync: dict[str, int] = {}
        durable = [NEVER] * len(self.ops)
        for i in range(len(self.ops) - 1, -1, -1):
            op, inode = self.ops[i], inodes[i]
            if op.kind in ("write", "truncate"):
                durable[i] = next_fsync.get(inode, NEVER)
            elif op.kind in ("mkdir", "create", "unlink"):
                durable[i] = next_dir_fsync.get(parent(op.path), NEVER)
            elif op.kind == "rename":
                durable[i] = next_dir_fsync.get(parent(op.target), NEVER)
            if op.kind == "fsync":
                next_fsync[inode] = i
            elif op.kind == "fsync_dir":
                next_dir_fsync[op.path] = i
        return [Step(op, inode, d) for op, inode, d in zip(self.ops, inodes, durable, strict=True)]

    def crash(self, k: int, rng: random.Random | None = None) -> Disk:
        """Return what the disk holds after a power cut just before op k; rng decides what was not yet durable.

        Without an rng nothing is lost: the state the workload left at that moment.
        """
        disk = Disk(set(self.snapshot.dirs), dict(self.snapshot.names), dict(self.snapshot.data),
                    dict(self.snapshot.modes))
        for step in self.steps[:k]:
            op = step.op
            sure = rng is None or step.durable_at < k
            if op.kind == "write":
                data = op.data
                if not sure:
                    assert rng is not None
                    fate = rng.random()
                    if fate < 1 / 3:
                        continue  # dropped
                    if fate < 1 / 2:
                        data = data[:rng.randrange(len(data))] if data else data  # torn: a prefix landed
                    elif fate < 2 / 3:
                        data = rng.randbytes(len(data))  # torn: garbage of the right length
                old = disk.data.get(step.inode, b"")
                if len(old) < op.offset:
                    old += bytes(op.offset - len(old))
                disk.data[step.inode] = old[:op.offset] + data + old[op.offset + len(data):]
            elif op.kind == "truncate":
                if sure or rng.random() < 0.5:  # type: ignore[union-attr]
                    old = disk.data.get(step.inode, b"")
                    disk.data[step.inode] = old[:op.offset] + bytes(max(0, op.offset - len(old)))
            elif op.kind in ("fsync", "fsync_dir"):
                continue
            elif not sure and rng.random() < 0.5:  # type: ignore[union-attr]
                continue  # a change of names not yet durable: undone
            elif op.kind == "mkdir":
                disk.dirs.add(op.path)
            elif op.kind == "create":
                disk.names[op.path] = step.inode
                disk.data.setdefault(step.inode, b"")
            elif op.kind == "rename":
                disk.names.pop(op.path, None)
                disk.names[op.target] = step.inode
                disk.data.setdefault(step.inode, b"")
            elif op.kind == "unlink":
                disk.names.pop(op.path, None)
        return disk
