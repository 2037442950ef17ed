"""Teaching points a hub looks after: each one's box, its public key, and its own channel.

A box makes an enrolment (a small JSON file, or the same text pasted): its id, name, school,
public key and address. The hub registers it; from then on the hub accepts reports signed by
that key, and publishes the point's lessons in the channel `point-<box id>`, signed by the hub.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any

from tinydb import where

from .. import keys
from ..errors import InvalidInput, KeyFileError, NotFound
from ..storage import State

FORMAT = "classbox-enrolment-1"
BOX_ID_RE = re.compile(r"[0-9a-f]{16}")
MAX_ENROLMENT = 8 * 1024


def channel_for(box_id: str) -> str:
    """Return the id of the channel a hub publishes for a teaching point's box."""
    return f"point-{box_id}"


@dataclass(frozen=True)
class TeachingPoint:
    """A registered teaching point."""

    box_id: str
    name: str
    school: str
    public_key: str
    address: str
    enrolled_at: float

    @property
    def channel(self) -> str:
        """Return the point's channel id."""
        return channel_for(self.box_id)

    @property
    def key_id(self) -> str:
        """Return the short id of the point's box key."""
        return keys.key_id(keys.parse_public(self.public_key.encode()))

    def as_dict(self) -> dict[str, Any]:
        """Return the point as plain values."""
        return {**asdict(self), "channel": self.channel, "key_id": self.key_id}


def make_enrolment(box_id: str, name: str, school: str, public_key_pem: str, address: str = "") -> str:
    """Return the enrolment text a box hands to its hub."""
    return json.dumps({"format": FORMAT, "box_id": box_id, "name": name, "school": school,
                       "public_key": public_key_pem, "address": address}, ensure_ascii=False, indent=2)


def parse_enrolment(text: str | bytes) -> dict[str, str]:
    """Return the fields of an enrolment, or raise InvalidInput naming what is wrong."""
    if len(text) > MAX_ENROLMENT:
        raise InvalidInput(f"an enrolment is at most {MAX_ENROLMENT // 1024} KiB; is this the right file?")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the enrolment is not JSON; paste the whole text the box shows") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidInput(f"not a classbox enrolment (format {FORMAT} expected)")
    fields = {}
    for name in ("box_id", "name", "school", "public_key", "address"):
        value = data.get(name, "")
        if not isinstance(value, str):
            raise InvalidInput(f"enrolment {name} must be text")
        fields[name] = value.strip()
    if not BOX_ID_RE.fullmatch(fields["box_id"]):
        raise InvalidInput("enrolment box_id must be 16 hex digits")
    try:
        keys.parse_public(fields["public_key"].encode(), "enrolment public_key")
    except KeyFileError as exc:
        raise InvalidInput(str(exc)) from None
    fields["address"] = check_address(fields["address"])
    if not fields["name"]:
        fields["name"] = f"classbox-{fields['box_id'][:6]}"
    return fields


def check_address(address: str) -> str:
    """Return a box's LAN/VPN address as http://host:port, '' for none, or raise InvalidInput."""
    address = address.strip().rstrip("/")
    if not address:
        return ""
    if "://" not in address:
        address = "http://" + address
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise InvalidInput(f"address {address!r}: give the box's address such as http://10.8.0.12:8080")
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", parts.hostname):
            raise InvalidInput(f"address {address!r}: not a host name or IP address") from None
    return address


class Points:
    """The hub's register of teaching points, in the state database."""

    def __init__(self, state: State) -> None:
        self.state = state

    def enrol(self, enrolment: str | bytes, address: str | None = None) -> TeachingPoint:
        """Register a box from its enrolment (again: its name, key and address are updated)."""
        fields = parse_enrolment(enrolment)
        if address is not None:
            fields["address"] = check_address(address)
        doc: dict[str, Any] = {**fields, "enrolled_at": time.time()}
        with self.state.transaction() as db:
            table = db.table("hub_points")
            old = table.get(where("box_id") == fields["box_id"])
            if old is not None:
                doc["enrolled_at"] = old["enrolled_at"]
            table.upsert(doc, where("box_id") == fields["box_id"])
        return TeachingPoint(**doc)

    def get(self, box_id: str) -> TeachingPoint | None:
        """Return a registered point, or None."""
        with self.state.transaction() as db:
            doc = db.table("hub_points").get(where("box_id") == box_id)
        return TeachingPoint(**doc) if doc else None

    def require(self, box_id: str) -> TeachingPoint:
        """Return a registered point, or raise NotFound."""
        point = self.get(box_id)
        if point is None:
            raise NotFound(f"no teaching point with box id {box_id!r} is registered on this hub")
        return point

    def all(self) -> list[TeachingPoint]:
        """Return every registered point, by name."""
        with self.state.transaction() as db:
            docs = db.table("hub_points").all()
        return sorted((TeachingPoint(**d) for d in docs), key=lambda p: (p.name, p.box_id))

    def remove(self, box_id: str) -> None:
        """Forget a point (its reports stay on disk)."""
        with self.state.transaction() as db:
            if not db.table("hub_points").remove(where("box_id") == box_id):
                raise NotFound(f"no teaching point with box id {box_id!r} is registered on this hub")
