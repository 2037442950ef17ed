"""The link between a teaching point's box and its hub: trusting the hub's key, following its channel, notices.

A hub publishes each teaching point's lessons in the channel `point-<box id>`, signed with the hub's
own key, in a mirror it serves at `<hub>/hub/mirror`. The box learns the hub's address and key
fingerprint at setup; the first time it follows the hub it fetches the key from `<hub>/hub/key.pub`
and pins it for that channel only if its fingerprint is the one setup names. From then on the
pinned key decides: it verifies the channel and the hub's signed notices ("a new version is up,
sync now"). A pinned key is never replaced silently.
"""

from __future__ import annotations

import http.client
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import channel, keys, signing
from .errors import ClassboxError, SignatureRejected
from .hub.points import channel_for
from .setup import SchoolSettings
from .store import blob_relpath, is_sha256
from .sync.download import Limits, SyncError, connect, fetch_small

if TYPE_CHECKING:
    from .box import Box

log = logging.getLogger(__name__)

KEY_PATH = "/hub/key.pub"
MIRROR_PATH = "/hub/mirror"
NOTIFY_PATH = "/api/v1/notify"
NOTIFY_MAX_SKEW = 600.0  # seconds: a notice replayed later than this is refused; one replayed sooner only syncs
NOTIFIED_KEY = "hub_notified_at"
MAX_KEY_BYTES = 4096


class HubKeyMismatch(ClassboxError):
    """The hub's key is not the one setup names, or not the one already pinned; nothing was changed."""

    code = "hub_key_mismatch"


def _in_mirror(root: Path, *parts: str) -> Path | None:
    """Return a path of a mirror, None if a link would lead out of it."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root.joinpath(*parts)))
    return real if real.is_relative_to(real_root) else None


def mirror_channel_file(root: Path, channel_id: str, name: str) -> bytes | None:
    """Return a channel's manifest or signature in a hub's mirror, None if there is none."""
    if not channel.ID_RE.fullmatch(channel_id) or name not in (channel.MANIFEST, channel.SIGNATURE):
        return None
    path = _in_mirror(root, "channels", channel_id, name)
    try:
        return path.read_bytes() if path is not None else None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def open_mirror_blob(root: Path, sha256: str) -> BinaryIO | None:
    """Open a file of a hub's mirror by its sha256, None if there is none."""
    path = _in_mirror(root, *blob_relpath(sha256).split("/")) if is_sha256(sha256) else None
    try:
        return open(path, "rb") if path is not None else None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def hub_source(settings: SchoolSettings) -> str | None:
    """Return the sync source of the hub set up for the box, None when there is none."""
    return f"{settings.hub_url}{MIRROR_PATH}" if settings.hub_url else None


def fetch_hub_key(hub_url: str, fingerprint: str, timeout: float = 10.0) -> Ed25519PublicKey:
    """Fetch the hub's public key; refuse it unless its id is the fingerprint setup names."""
    limits = Limits(connect_timeout=timeout, read_timeout=timeout, deadline=timeout)
    try:
        data = fetch_small(f"{hub_url.rstrip('/')}{KEY_PATH}", MAX_KEY_BYTES, limits)
    except SyncError as exc:
        raise SyncError(f"cannot fetch the hub's key: {exc}; check that {hub_url} is the hub's address and "
                        "that it runs as a hub (CLASSBOX_ROLE=hub)", exc.retry_after, exc.permanent) from None
    key = keys.parse_public(data, f"the key the hub at {hub_url} offers")
    offered = keys.key_id(key)
    if offered != fingerprint:
        raise HubKeyMismatch(f"the hub at {hub_url} offers key {offered} but setup expects {fingerprint}; "
                             "check the hub's address and the fingerprint given at setup")
    return key


def follow_hub(box: Box, timeout: float = 10.0) -> str | None:
    """Pin the hub's key for the box's point channel (first time only) and follow it; return the channel id."""
    settings = box.setup.settings()
    if not (settings.hub_url and settings.hub_key):
        return None
    channel_id = channel_for(box.box_id)
    pinned = box.trusted_key(channel_id)
    if pinned is not None and keys.key_id(pinned) != settings.hub_key:
        raise HubKeyMismatch(f"channel {channel_id} is pinned to key {keys.key_id(pinned)} but setup names the hub "
                             f"key {settings.hub_key}; a pinned key is never replaced by itself: "
                             "check which one is right before changing either")
    key = None if pinned is not None else fetch_hub_key(settings.hub_url, settings.hub_key, timeout)
    box.subscribe(channel_id, {}, key)
    if key is not None:
        log.info("following the hub at %s: channel %s, key %s", settings.hub_url, channel_id, settings.hub_key)
    return channel_id


@dataclass(frozen=True)
class HubSync:
    """What a sync brings in from the hub: its mirror and the box's point channel."""

    source: str
    channel: str


def hub_sync(box: Box, timeout: float = 10.0) -> HubSync | None:
    """Follow the hub if one is set up and return what to sync from it; None (logged) when it cannot be now."""
    try:
        channel_id = follow_hub(box, timeout)
    except ClassboxError as exc:  # no key yet and the hub unreachable, or a key that does not match
        log.warning("not syncing from the hub this time: %s", exc)
        return None
    source = hub_source(box.setup.settings())
    if not (channel_id and source):
        return None
    if not _published(source, channel_id, timeout):
        # Before the hub's teachers publish anything for this box there is nothing to fetch, and a run
        # that fails on it would make the box back off from every other source too.
        log.info("the hub has published nothing for this box yet (%s)", channel_id)
        return None
    return HubSync(source, channel_id)


def _published(source: str, channel_id: str, timeout: float) -> bool:
    """Tell whether the hub's mirror holds the channel: False only when it says so (404); True if it cannot say."""
    url = f"{source}/channels/{channel_id}/{channel.SIGNATURE}"
    try:
        fetch_small(url, 4096, Limits(connect_timeout=timeout, read_timeout=timeout, deadline=timeout))
    except SyncError as exc:
        return not (exc.permanent and "HTTP 404" in str(exc))
    return True


# ---------------------------------------------------------------- notices from the hub


def notify(point_address: str, hub_key: Ed25519PrivateKey, hub_id: str, timeout: float = 5) -> str | None:
    """Tell a teaching point's box to sync now; None when it took the notice, else why it did not."""
    url = f"{point_address.rstrip('/')}{NOTIFY_PATH}"
    limits = Limits(connect_timeout=timeout, read_timeout=timeout)
    try:
        conn, target = connect(url, limits)
    except SyncError as exc:
        return f"not sent: {exc}"
    body = b""
    headers = signing.sign_request(hub_key, hub_id, "POST", target, body)
    try:
        conn.request("POST", target, body=body, headers={"User-Agent": "classbox", **headers})
        response = conn.getresponse()
        try:
            answer = response.read(4096).decode("utf-8", "replace").strip()
        finally:
            response.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"unreachable: {url}: {exc or type(exc).__name__}"
    finally:
        conn.close()
    if response.status != 202:
        return f"refused: {url} answered HTTP {response.status} {response.reason}: {answer[:300]}"
    return None


def accept_notice(box: Box, headers: Mapping[str, str], method: str, path: str, body: bytes,
                  now: float | None = None) -> HubSync:
    """Check a notice is signed by the hub pinned for the box's point channel; return what to sync."""
    signing.sender_of(headers)
    settings = box.setup.settings()
    source = hub_source(settings)
    if source is None or not settings.hub_key:
        raise SignatureRejected("no hub is set up for this box: it takes notices from none")
    channel_id = channel_for(box.box_id)
    key = box.trusted_key(channel_id)
    if key is None:
        raise SignatureRejected(f"this box does not follow its hub yet (no key pinned for {channel_id}); "
                                "sync from the hub once on /admin/hub")
    now = time.time() if now is None else now
    signing.verify_request(key, headers, method, path, body, max_skew=NOTIFY_MAX_SKEW, now=now)
    box.state.set(NOTIFIED_KEY, now)
    return HubSync(source, channel_id)


# ---------------------------------------------------------------- what the admin page shows


@dataclass(frozen=True)
class LinkState:
    """The box's link to its hub, as the admin page shows it."""

    hub_url: str
    hub_key: str
    channel: str
    pinned_key: str | None
    version: int | None
    lessons: int
    ready: int
    notified_at: float | None

    @property
    def configured(self) -> bool:
        """Tell whether setup names a hub."""
        return bool(self.hub_url and self.hub_key)

    @property
    def key_matches(self) -> bool:
        """Tell whether the pinned key is the one setup names."""
        return self.pinned_key is not None and self.pinned_key == self.hub_key


def link_state(box: Box) -> LinkState:
    """Return the hub settings, the key pinned, the channel version held and the last notice."""
    settings = box.setup.settings()
    channel_id = channel_for(box.box_id)
    pinned = box.trusted_key(channel_id)
    info = next((c for c in box.catalog.channels() if c.id == channel_id), None)
    if info is None:
        installed = channel.installed_manifest(box.data.root, channel_id)
        version, lessons = (installed[0].version, len(installed[0].lessons)) if installed else (None, 0)
    else:
        version, lessons = info.version, info.lessons
    notified = box.state.get(NOTIFIED_KEY)
    return LinkState(settings.hub_url, settings.hub_key, channel_id, keys.key_id(pinned) if pinned else None,
                     version, lessons, info.ready if info else 0, float(notified) if notified else None)
