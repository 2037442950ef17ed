"""The box's own addresses on the LAN, for the URLs shown to people."""

from __future__ import annotations

import ipaddress

import psutil


def lan_addresses() -> list[str]:
    """Return the box's IPv4 addresses on its network interfaces, private ones first, loopback last."""
    found: list[ipaddress.IPv4Address] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family.name == "AF_INET":
                ip = ipaddress.IPv4Address(a.address)
                if not ip.is_link_local and ip not in found:
                    found.append(ip)
    found.sort(key=lambda ip: (ip.is_loopback, not ip.is_private, ip.packed))
    return [str(ip) for ip in found]


def url_host(host: str) -> str:
    """Return the host to put in a URL for a bind address: the LAN address for a wildcard bind."""
    if host in ("0.0.0.0", "::", ""):
        addrs = lan_addresses()
        return addrs[0] if addrs else "127.0.0.1"
    return f"[{host}]" if ":" in host else host
