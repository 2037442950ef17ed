"""USB drives: write channels to a drive in the mirror layout, so another box can import them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import channel, storage
from .errors import ClassboxError
from .store import BlobMismatch, Store, blob_relpath, copy_verified

log = logging.getLogger(__name__)

USB_FOLDER = "classbox"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    channels: tuple[str, ...]
    files_written: int
    files_present: int
    bytes_written: int


def export(store: Store, dest: Path, channel_ids: list[str] | None = None,
           on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Write the box's active channels under dest/classbox/ in the mirror layout; resumable, manifests last."""
    root = Path(dest) / USB_FOLDER
    drive = Path(dest).resolve()
    box_root = store.data.root
    available = channel.channel_ids(box_root)
    chosen = channel_ids or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ClassboxError(f"this box does not hold channel {', '.join(unknown)}; it holds {', '.join(available)}")
    manifests = []
    for channel_id in chosen:
        found = channel.installed_manifest(box_root, channel_id)
        assert found is not None
        manifests.append(found[0])
    blobs = {b.sha256: b for m in manifests for b in m.blobs().values() if store.has(b.sha256, b.size)}
    total = sum(b.size for b in blobs.values())
    done = written = present = nbytes = 0
    try:
        for blob in blobs.values():
            target = _on_drive(drive, root / blob_relpath(blob.sha256))
            if target.is_file() and target.stat().st_size == blob.size:
                present += 1  # written by an earlier, interrupted export
            else:
                with open(store.path(blob.sha256), "rb") as src, storage.new_file(target) as dst:
                    copy_verified(src, dst, blob.sha256, blob.size)
                written += 1
                nbytes += blob.size
            done += blob.size
            if on_progress:
                on_progress(done, total)
        for m in manifests:  # metadata last: a drive pulled early holds no manifest pointing at missing files
            folder = channel.channel_dir(box_root, m.id)
            _on_drive(drive, channel.channel_dir(root, m.id))
            channel.activate(root, m.id, (folder / channel.MANIFEST).read_bytes(),
                             (folder / channel.SIGNATURE).read_bytes())
    except BlobMismatch as exc:
        raise ClassboxError(f"a file in this box's store is damaged ({exc}); run `classbox scrub`") from None
    except OSError as exc:
        raise ClassboxError(f"writing to {root} failed: {exc.strerror or exc}; was the drive removed? "
                            "Run the export again to go on where it stopped") from None
    return ExportResult(tuple(chosen), written, present, nbytes)


def _on_drive(drive: Path, path: Path) -> Path:
    """Return path, refusing one a link on the drive leads elsewhere: an export writes onto the drive only."""
    if not path.resolve().is_relative_to(drive):
        raise ClassboxError(f"{path} leads outside the drive {drive} (a link on the drive); the export stopped")
    return path


@dataclass(frozen=True)
class Drive:
    """A drive holding channels, as noticed under the USB mount roots."""

    path: Path
    channels: tuple[str, ...]
    new_lessons: int

    def message(self) -> str:
        """Say what the drive holds, for the status."""
        return f"USB found: {len(self.channels)} channels, {self.new_lessons} lessons new ({self.path})"


def find_drives(roots: list[Path], known_lessons: set[str], max_bytes: int) -> list[Drive]:
    """Look under the mount roots (two levels: /media/<label>, /media/<user>/<label>) for drives with channels."""
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        candidates = [p for p in root.iterdir() if p.is_dir()]
        candidates += [q for p in candidates if not (p / USB_FOLDER).is_dir() for q in _subdirs(p)]
        for mount in candidates:
            layout = mount / USB_FOLDER
            ids = channel.channel_ids(layout)
            if not ids:
                continue
            new = set()
            for channel_id in ids:
                try:
                    data, _sig = channel.read_signed(layout, channel_id, max_bytes)
                    manifest = channel.parse_manifest(data)
                except ClassboxError as exc:  # counted as found, not trusted: import checks everything
                    log.info("drive %s: channel %s unreadable: %s", mount, channel_id, exc)
                    continue
                new |= {lesson.id for lesson in manifest.lessons} - known_lessons
            found.append(Drive(mount, tuple(ids), len(new)))
    return found


def writable_drives(roots: list[Path]) -> list[Path]:
    """Return the folders under the mount roots a channel export could go to: drives, writable by this user."""
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for p in _subdirs(root):
            # /media/<label> is a drive; /media/<user>/ is not one but holds them (desktop automounts).
            inner = [] if os.path.ismount(p) or (p / USB_FOLDER).is_dir() else _subdirs(p)
            found += inner or [p]
    return sorted(p for p in found if os.access(p, os.W_OK))


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:
        return []
