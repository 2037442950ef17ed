"""The TV page shows an address that works from the classroom."""

from __future__ import annotations

from classbox import netinfo


def test_address_is_the_one_the_tv_used(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/tv", headers={"Host": "192.168.1.20:8080"}).get_data(as_text=True)
    assert 'data-box-url="http://192.168.1.20:8080/tv"' in page


def test_loopback_visit_shows_a_lan_address(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/tv", headers={"Host": "localhost:8080"}).get_data(as_text=True)
    lan = [a for a in netinfo.lan_addresses() if not a.startswith("127.")]
    expected = lan[0] if lan else "localhost"
    assert f'data-box-url="http://{expected}:8080/tv"' in page


def test_root_leads_to_tv(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/tv")
