"""mDNS on the school LAN: announce this box as _classbox._tcp and _http._tcp, and find the other boxes.

What a box announces, for both services, on host `classbox-<short id>.local.`:

    instance  the box name (`classbox-<short id>` when it has none), renamed `<name>-2`, `-3`...
              when another box already uses it
    TXT       id, name, school, version, role ("box" or "hub") and path: "/tv" on _http (what a
              person opens), "/mirror" on _classbox (what another box syncs from)

Names are chosen before announcing: the box listens for LOOK_SECONDS (browsing both service types
and asking who has its host name) and takes the first name nobody else answers for: `<name>-2`,
`classbox-<short id>-2.local.`... A host name answered with one of this box's own addresses (avahi
publishing a system host name of the same name) is not a conflict. python-zeroconf's
`register_service(allow_name_change=True)` renames only on answers to its probes, which come by
unicast and reach just one of the sockets sharing port 5353 when several responders run on one
host, and it never checks host names; so the box looks itself and then announces without probing.
Names are settled once, at start: two boxes starting within the same second can still take the
same name, and nothing renames a box later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import psutil
from zeroconf import (
    AddressResolver,
    DNSPointer,
    DNSQuestionType,
    InterfaceChoice,
    InterfacesType,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf import Error as ZeroconfError

from .netinfo import lan_addresses

log = logging.getLogger(__name__)

CLASSBOX_TYPE = "_classbox._tcp.local."
HTTP_TYPE = "_http._tcp.local."
CHECK_TYPE = "_classbox-check._tcp.local."
TV_PATH = "/tv"
MIRROR_PATH = "/mirror"
ROLES = ("box", "hub")
BOX_ID_RE = re.compile(r"[0-9a-f]{16}")

# A responder that multicast a record within the last second waits a second before answering
# for it again (RFC 6762 section 14), so a box that just started answers after ~1.3 s.
LOOK_SECONDS = 1.5
RESOLVE_MS = 2000
ANNOUNCE_SECONDS = 5.0
HOST_TRIES = 5
INSTANCE_TRIES = 99
# A DNS label holds 63 bytes; keep room for a "-99" rename.
INSTANCE_BYTES = 59
# A TXT string holds 255 bytes, key and "=" included.
TXT_VALUE_BYTES = 200
ADVICE = "set CLASSBOX_ZEROCONF_INTERFACES to 'all', 'off' or addresses of this box"


@dataclass(frozen=True)
class Announcement:
    """What this box tells the LAN about itself."""

    box_id: str
    name: str
    school: str
    version: str
    role: str
    port: int

    def __post_init__(self) -> None:
        if not BOX_ID_RE.fullmatch(self.box_id):
            raise ValueError(f"box id must be 16 lowercase hex characters, got {self.box_id!r}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535 (the port the server really listens on), got {self.port}")

    @property
    def short_id(self) -> str:
        """Return the first six characters of the box id."""
        return self.box_id[:6]


@dataclass(frozen=True)
class Peer:
    """Another box found on the LAN; addresses holds at least one, the most useful first."""

    box_id: str
    name: str
    school: str
    version: str
    role: str
    addresses: tuple[str, ...]
    port: int

    @property
    def mirror_url(self) -> str:
        """Return the URL a box syncs from when it uses this peer."""
        host = self.addresses[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}{MIRROR_PATH}"

    def as_dict(self) -> dict[str, object]:
        """Return the peer as plain JSON-able values, its mirror URL included."""
        return {**asdict(self), "addresses": list(self.addresses), "mirror_url": self.mirror_url}


class Discovery:
    """Announce this box and keep a live list of the other boxes; does nothing when interfaces is [].

    interfaces: None for every interface (announcing the box's LAN IPv4 addresses), [] for off,
    or IP addresses of this box (announced as given). Call start and close from one thread.
    """

    def __init__(self, announcement: Announcement, interfaces: Sequence[str] | None) -> None:
        self.announcement = announcement
        self.interfaces = None if interfaces is None else list(interfaces)
        self._host = f"classbox-{announcement.short_id}.local."
        self._instance = instance_name(announcement)
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._lock = threading.Lock()
        self._peers: dict[str, Peer] = {}

    @property
    def host_name(self) -> str:
        """Return the host name announced, after any rename (the planned one before start)."""
        return self._host

    @property
    def instance_name(self) -> str:
        """Return the service instance name announced, after any rename (the planned one before start)."""
        return self._instance

    @property
    def running(self) -> bool:
        """Tell whether the box is announced and browsing."""
        return self._zc is not None

    def start(self) -> None:
        """Announce both services and start browsing; on network trouble log a warning and stay off."""
        if self._zc is not None or self.interfaces == []:
            return
        where = describe(self.interfaces)
        problem = interface_problem(self.interfaces)
        if problem is not None:
            log.warning("zeroconf is off on %s, other boxes will not find this one: %s", where, problem)
            return
        try:
            zc = Zeroconf(interfaces=_choice(self.interfaces))
        except (OSError, RuntimeError) as exc:
            log.warning("zeroconf is off, other boxes will not find this one: cannot open mDNS on %s (%s); %s",
                        where, exc, ADVICE)
            return
        self._zc = zc
        try:
            # Browse first: the answers that fill the cache while looking tell which names are taken.
            look_until = time.monotonic() + LOOK_SECONDS
            self._browser = ServiceBrowser(zc, [CLASSBOX_TYPE, HTTP_TYPE], handlers=[self._on_change],
                                           question_type=DNSQuestionType.QM)
            addresses = advertised_addresses(self.interfaces)
            self._host = self._free_host(zc, addresses)
            time.sleep(max(0.0, look_until - time.monotonic()))
            self._instance = self._free_instance(zc)
            _announce(zc, [self._service(CLASSBOX_TYPE, MIRROR_PATH, addresses),
                           self._service(HTTP_TYPE, TV_PATH, addresses)])
        except (ZeroconfError, OSError, RuntimeError, TimeoutError) as exc:
            log.warning("zeroconf is off, other boxes will not find this one: announcing on %s failed (%s)",
                        where, _why(exc))
            self.close()
            return
        log.info("zeroconf: announced %r as %s on %s (%s)", self._instance, self._host, where,
                 ", ".join(addresses) or "no address")

    def run(self, stop: threading.Event, check_every: float = 30.0) -> None:
        """Stay announced until stop is set, announcing again when the box's addresses change; then close.

        Meant for a thread of its own, so that start and close happen in one thread and a box that
        booted before the router gave it an address is announced once it has one.
        """
        try:
            self.start()
            announced = advertised_addresses(self.interfaces)
            while not stop.wait(check_every):
                now = advertised_addresses(self.interfaces)
                if now != announced:
                    log.info("zeroconf: addresses changed from %s to %s; announcing again",
                             ", ".join(announced) or "none", ", ".join(now) or "none")
                    self.close()
                    self.start()
                    announced = now
        finally:
            self.close()

    def peers(self) -> list[Peer]:
        """Return the other boxes found, one per box id, sorted by name."""
        with self._lock:
            found = list(self._peers.values())
        latest = {peer.box_id: peer for peer in found}  # the most recently seen wins
        return sorted(latest.values(), key=lambda p: (p.name, p.box_id))

    def close(self) -> None:
        """Stop browsing, say goodbye for both services and close the sockets; safe to call twice."""
        zc, browser = self._zc, self._browser
        self._zc = self._browser = None
        if zc is None:
            return
        try:
            if browser is not None:
                browser.cancel()
        finally:
            try:
                zc.unregister_all_services()
            except ZeroconfError as exc:
                log.warning("zeroconf: goodbye not sent (%s); other boxes drop this one when its records expire",
                            _why(exc))
            finally:
                zc.close()
                with self._lock:
                    self._peers.clear()

    def _free_host(self, zc: Zeroconf, addresses: list[str]) -> str:
        """Return the first host name no other machine answers for."""
        stem = f"classbox-{self.announcement.short_id}"
        candidates = [f"{stem}.local."] + [f"{stem}-{n}.local." for n in range(2, HOST_TRIES + 1)]
        for host in candidates:
            resolver = AddressResolver(host)
            if not resolver.request(zc, LOOK_SECONDS * 1000, question_type=DNSQuestionType.QM):
                return host
            theirs = set(resolver.parsed_addresses())
            if theirs & set(addresses):
                return host  # this machine answers already, e.g. avahi for a system host name of the same name
            log.warning("zeroconf: host name %s is taken by %s; trying another", host, ", ".join(sorted(theirs)))
        log.warning("zeroconf: host names %s to %s are all taken; using the last", candidates[0], candidates[-1])
        return candidates[-1]

    def _free_instance(self, zc: Zeroconf) -> str:
        """Return the first instance name that neither service type uses yet on the LAN."""
        taken = {name.lower() for name in _instances(zc, CLASSBOX_TYPE) | _instances(zc, HTTP_TYPE)}
        base = self._instance
        for candidate in itertools.chain([base], (f"{base}-{n}" for n in range(2, INSTANCE_TRIES + 1))):
            if candidate.lower() not in taken:
                if candidate != base:
                    log.info("zeroconf: a service on the LAN is called %r already; this box is %r", base, candidate)
                return candidate
        return f"{base}-{self.announcement.short_id}"

    def _service(self, type_: str, path: str, addresses: list[str]) -> ServiceInfo:
        """Return the service of one type to announce, under the chosen names."""
        a = self.announcement
        properties = {"id": a.box_id, "name": _clip(a.name, TXT_VALUE_BYTES),
                      "school": _clip(a.school, TXT_VALUE_BYTES), "version": _clip(a.version, TXT_VALUE_BYTES),
                      "role": a.role, "path": path}
        return ServiceInfo(type_, f"{self._instance}.{type_}", port=a.port, properties=properties, server=self._host,
                           parsed_addresses=addresses)

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        """Add, update or drop the peer behind a _classbox service that appeared, changed or left."""
        # Runs in the browser's thread for every change: whatever goes wrong must not stop browsing.
        if service_type != CLASSBOX_TYPE:
            return
        try:
            if state_change is ServiceStateChange.Removed:
                with self._lock:
                    gone = self._peers.pop(name, None)
                if gone is not None:
                    log.info("zeroconf: box %r (%s) left", gone.name, gone.box_id)
                return
            info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_MS)
            if info is None:
                return
            peer = peer_from(info)
            with self._lock:
                known = self._peers.pop(name, None)
                if peer is not None and peer.box_id != self.announcement.box_id:
                    self._peers[name] = peer
            if peer is not None and known is None and peer.box_id != self.announcement.box_id:
                log.info("zeroconf: found box %r (%s) at %s", peer.name, peer.box_id, peer.mirror_url)
        except Exception:
            log.exception("zeroconf: cannot read the service %s", name)


def can_advertise(interfaces: Sequence[str] | None, timeout: float = 3.0) -> str | None:
    """Announce a throwaway service and hear it back: None if that works, else what is wrong and what to do."""
    if interfaces is not None and not interfaces:
        return ("zeroconf is off (CLASSBOX_ZEROCONF_INTERFACES=off), so other boxes cannot find this one; "
                "set it to 'all' to turn it on")
    where = describe(interfaces)
    problem = interface_problem(interfaces)
    if problem is not None:
        return problem
    addresses = advertised_addresses(interfaces)
    if not addresses:
        return "this box has no IPv4 address to announce: connect it to the school network"
    deadline = time.monotonic() + timeout
    try:
        zc = Zeroconf(interfaces=_choice(interfaces))
    except (OSError, RuntimeError) as exc:
        return f"cannot open mDNS (UDP port 5353) on {where}: {exc}; {ADVICE}"
    try:
        token = secrets.token_hex(4)
        info = ServiceInfo(CHECK_TYPE, f"check-{token}.{CHECK_TYPE}", port=9, properties={},
                           server=f"classbox-check-{token}.local.", parsed_addresses=addresses)
        _announce(zc, [info], max(0.1, deadline - time.monotonic()))
        heard = ServiceInfo(CHECK_TYPE, info.name)
        if not heard.request(zc, max(100.0, (deadline - time.monotonic()) * 1000)):
            return (f"this box does not hear its own mDNS on {where}: check that the interface is up and "
                    "allows multicast and that no firewall drops UDP port 5353")
        zc.unregister_service(info)
    except (ZeroconfError, OSError, RuntimeError, TimeoutError) as exc:
        return f"announcing a test service on {where} failed ({_why(exc)}); {ADVICE}"
    finally:
        zc.close()
    return None


def instance_name(announcement: Announcement) -> str:
    """Return the instance name a box asks for: its name made fit for a DNS label, else classbox-<short id>."""
    # A dot would split the label for other mDNS stacks, a control character is not allowed in one.
    cleaned = re.sub(r"[\x00-\x1f\x7f]", " ", announcement.name).replace(".", "-")
    cleaned = _clip(" ".join(cleaned.split()), INSTANCE_BYTES).strip()
    return cleaned or f"classbox-{announcement.short_id}"


def peer_from(info: ServiceInfo) -> Peer | None:
    """Return the peer a resolved _classbox service describes, None if it is not a usable box."""
    props = info.decoded_properties
    box_id = (props.get("id") or "").lower()
    addresses = _usable(info.parsed_addresses())
    if not BOX_ID_RE.fullmatch(box_id) or not info.port or not addresses:
        return None
    return Peer(box_id=box_id, name=props.get("name") or f"classbox-{box_id[:6]}", school=props.get("school") or "",
                version=props.get("version") or "", role=props.get("role") or "box", addresses=addresses,
                port=info.port)


def advertised_addresses(interfaces: Sequence[str] | None) -> list[str]:
    """Return the addresses to announce: those given, or the LAN IPv4 ones (loopback only if nothing else)."""
    if interfaces is not None:
        return list(interfaces)
    found = lan_addresses()
    outside = [a for a in found if not ipaddress.ip_address(a).is_loopback]
    return outside or found


def interface_problem(interfaces: Sequence[str] | None) -> str | None:
    """Return why zeroconf cannot use the addresses given (one is not this box's), None if it may."""
    if interfaces is None:
        return None
    own = _local_addresses()
    missing = [a for a in interfaces if _normal(a) not in own]
    if not missing:
        return None
    verb = "is not an address" if len(missing) == 1 else "are not addresses"
    return f"{', '.join(missing)} {verb} of this box (it has {', '.join(sorted(own)) or 'none'}); {ADVICE}"


def describe(interfaces: Sequence[str] | None) -> str:
    """Return the interfaces in words, for messages."""
    if interfaces is None:
        return "all interfaces"
    return ", ".join(interfaces) if interfaces else "no interface"


def _choice(interfaces: Sequence[str] | None) -> InterfacesType:
    """Return the interfaces as zeroconf takes them."""
    return InterfaceChoice.All if interfaces is None else list(interfaces)


async def _announce_all(zc: Zeroconf, infos: list[ServiceInfo]) -> None:
    """Register every service at once and wait for their announcements."""
    # The names were checked already, so no probing: announce straight away.
    broadcasts = [await zc.async_register_service(info, cooperating_responders=True) for info in infos]
    await asyncio.gather(*broadcasts)


def _announce(zc: Zeroconf, infos: list[ServiceInfo], timeout: float = ANNOUNCE_SECONDS) -> None:
    """Register the services on zeroconf's loop and wait for their announcements to go out."""
    if zc.loop is None:
        raise RuntimeError("zeroconf did not start")
    future = asyncio.run_coroutine_threadsafe(_announce_all(zc, infos), zc.loop)
    try:
        future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise TimeoutError(f"announcing took more than {timeout:.1f} s") from None


def _instances(zc: Zeroconf, type_: str) -> set[str]:
    """Return the instance names of a service type in zeroconf's cache."""
    now = current_time_millis()
    suffix = f".{type_}".lower()
    return {record.alias[: -len(suffix)] for record in zc.cache.entries_with_name(type_)
            if isinstance(record, DNSPointer) and not record.is_expired(now) and record.alias.lower().endswith(suffix)}


def _usable(addresses: list[str]) -> tuple[str, ...]:
    """Order addresses to try: IPv4 before IPv6, loopback last; drop IPv6 link-local (it needs a scope)."""
    parsed = [ipaddress.ip_address(a) for a in addresses]
    parsed = [ip for ip in parsed if not (ip.version == 6 and ip.is_link_local)]
    parsed.sort(key=lambda ip: (ip.is_loopback, ip.version))
    return tuple(dict.fromkeys(str(ip) for ip in parsed))


def _local_addresses() -> set[str]:
    """Return every IPv4 and IPv6 address of this machine."""
    return {_normal(a.address) for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family.name in ("AF_INET", "AF_INET6")}


def _normal(address: str) -> str:
    """Return an address in its canonical form, without an IPv6 zone."""
    return str(ipaddress.ip_address(address.split("%", 1)[0]))


def _why(exc: BaseException) -> str:
    """Return an exception's message, or its class name when it has none."""
    return str(exc) or type(exc).__name__


def _clip(text: str, limit: int) -> str:
    """Cut text to at most limit UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")
