"""Path-traversal payloads for tests/test_attacks.py, made combinatorially and deterministically.

Each payload is a request-path fragment as an attacker would type it: percent-encoded once or twice,
overlong UTF-8, backslashes, Unicode look-alike dots and slashes, NUL bytes, absolute paths, and
levels that mix all of these. The same seed always gives the same list, so a failure names a
payload that can be tried again by hand.
"""

from __future__ import annotations

import itertools
import random
import urllib.parse
from collections.abc import Sequence

SEED = 20261122

# Ways to write "..".
DOTS = (
    "..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%25252e%25252e",
    "%c0%ae%c0%ae", "%e0%80%ae%e0%80%ae", "%c0%2e%c0%2e", "%uff0e%uff0e",
    "\u2025", "\uff0e\uff0e", "%ef%bc%8e%ef%bc%8e", "...", "....", "..;",
)
# Ways to write "/".
SEPARATORS = (
    "/", "%2f", "%2F", "%252f", "%25252f", "\\", "%5c", "%5C", "%255c", "\\\\",
    "%c0%af", "%c1%9c", "%e0%80%af", "\uff0f", "/./", "//", "%2f%2e%2f",
)
# Things ending a name early, or a suffix a checker might look for instead of the name.
SUFFIXES = ("", "%00", "%00.mp4", "%2500", "\x00", "%00/", ";.mp4", "%0a", "%09")
DEPTHS = tuple(range(1, 13))

# Paths that need no "..": absolute, drive letters, UNC, URLs.
ABSOLUTE = (
    "/etc/passwd", "//etc/passwd", "///etc/passwd", "%2fetc%2fpasswd", "%252fetc%252fpasswd",
    "\\etc\\passwd", "%5cetc%5cpasswd", "C:\\Windows\\win.ini", "C:%5cWindows%5cwin.ini", "c:/windows/win.ini",
    "C:", "C:\\", "\\\\server\\share\\secret", "%5c%5cserver%5cshare", "file:///etc/passwd",
    "file:%2f%2f%2fetc%2fpasswd", "/proc/self/environ", "/proc/self/cwd/state.json", "/dev/zero", "/dev/urandom",
    "..", ".", "...", "%2e", "%2e%2e", "%00", "%2500", "\x00", "~", "~root", "$HOME", "%24HOME",
)


def _one_level(rng: random.Random) -> str:
    return rng.choice(DOTS) + rng.choice(SEPARATORS)


def traversal_payloads(targets: Sequence[str], absolute_targets: Sequence[str] = (), count: int = 500,
                       seed: int = SEED) -> list[str]:
    """Return count distinct payloads reaching for targets (paths relative to some folder up the tree).

    absolute_targets are absolute paths (a canary file's) to ask for outright, plain and encoded.
    Every spelling of ".." meets every spelling of "/" once; then more uniform payloads (one spelling
    at every level, with a depth, target and suffix) and mixed ones (spellings change level by level,
    as a filter that decodes once would be fooled by) fill the count.
    """
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()

    def add(payload: str) -> None:
        if payload and payload not in seen and "?" not in payload and "#" not in payload:
            seen.add(payload)
            out.append(payload)

    for path in (*ABSOLUTE, *absolute_targets):
        add(path)
    for path in absolute_targets:
        add(urllib.parse.quote(path, safe=""))
        add(urllib.parse.quote(urllib.parse.quote(path, safe=""), safe=""))
        add(path + "%00.mp4")
    # Every spelling of ".." with every separator at least once, plain target.
    for dots, sep in itertools.product(DOTS, SEPARATORS):
        add((dots + sep) * rng.choice(DEPTHS) + rng.choice(targets).replace("/", sep))
    # Uniform spellings, drawn from the whole product (dots x separator x depth x target x suffix).
    while len(out) < count * 3 // 4:
        dots, sep = rng.choice(DOTS), rng.choice(SEPARATORS)
        add((dots + sep) * rng.choice(DEPTHS) + rng.choice(targets).replace("/", sep) + rng.choice(SUFFIXES))
    # Mixed spellings, level by level.
    while len(out) < count:
        depth = rng.choice(DEPTHS)
        prefix = "".join(_one_level(rng) for _ in range(depth))
        lead = rng.choice(("", "/", "./", "%2e/", "a/", "x%2f"))
        add(lead + prefix + rng.choice(targets) + rng.choice(SUFFIXES))
    return out[:count]


def for_request_line(payload: str) -> str:
    """Return a payload as it can go on an HTTP request line: non-ASCII and control characters percent-encoded.

    Everything already percent-encoded stays as it is, so the server sees exactly the encoding chosen.
    """
    return "".join(c if 0x20 < ord(c) < 0x7f else urllib.parse.quote(c, safe="") for c in payload)


def as_filesystem_paths(payloads: Sequence[str]) -> list[str]:
    """Return each payload decoded once and twice, as a path a form field or a command line might carry."""
    out: list[str] = []
    seen: set[str] = set()
    for p in payloads:
        once = urllib.parse.unquote(p)
        for candidate in (p, once, urllib.parse.unquote(once)):
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out
