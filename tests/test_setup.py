"""First boot: the setup gate over every admin route, the setup form, and provisioning files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from classbox import create_app
from classbox.accounts import hash_password
from classbox.config import Config
from classbox.errors import ProvisionError
from classbox.setup import read_provision

PASSWORD = "correct horse 1"


def csrf_of(html: str) -> str:
    """Return the CSRF token a page's form carries."""
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "the page has no CSRF token"
    return m.group(1)


def admin_routes(app: Flask) -> list[tuple[str, str]]:
    """Return (method, path) for every admin page and admin API route, with sample path values."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not (rule.endpoint.startswith("admin.") or rule.endpoint.startswith("admin_api.")):
            continue
        path = rule.rule.replace("<action>", "rooms")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


def do_setup(client: FlaskClient, **fields: str) -> object:
    """Fill in and send the setup form as a browser would."""
    page = client.get("/setup")
    form = {"school": "石门村小学", "box_name": "一号盒子", "timezone": "Asia/Shanghai",
            "password": PASSWORD, "password_again": PASSWORD, "csrf_token": csrf_of(page.text), **fields}
    return client.post("/setup", data=form)


def test_every_admin_route_leads_to_setup_until_it_is_done(app: Flask, client: FlaskClient) -> None:
    routes = admin_routes(app)
    assert ("GET", "/admin") in routes and ("POST", "/api/v1/admin/<action>".replace("<action>", "rooms")) in routes
    assert len(routes) >= 10
    for method, path in routes:
        r = client.open(path, method=method)
        if path.startswith("/api/"):
            assert r.status_code == 403 and r.json["code"] == "setup_needed", (method, path)
        else:
            assert r.status_code == 302 and r.headers["Location"].endswith("/setup"), (method, path)
    assert client.get("/setup").status_code == 200


def test_setup_once_then_never_again_and_every_admin_route_needs_a_login(app: Flask, client: FlaskClient) -> None:
    r = do_setup(client)
    assert r.status_code == 302 and r.headers["Location"].endswith("/admin")
    dashboard = client.get("/admin")
    assert dashboard.status_code == 200 and "石门村小学" in dashboard.text
    assert client.get("/setup").status_code == 404
    r = client.post("/setup", data={"school": "x", "box_name": "y", "password": "another password",
                                    "password_again": "another password"})
    assert r.status_code == 404
    anonymous = app.test_client()
    for method, path in admin_routes(app):
        r = anonymous.open(path, method=method)
        if path == "/admin/login":
            assert r.status_code in (200, 403), (method, path)  # the form, or its post refused without a token
        elif path.startswith("/api/"):
            assert r.status_code == 401 and r.json["code"] == "login_needed", (method, path)
        else:
            assert r.status_code == 302 and "/admin/login" in r.headers["Location"], (method, path)


def test_setup_refuses_bad_input_and_changes_nothing(app: Flask, client: FlaskClient) -> None:
    box = app.extensions["classbox"]
    cases = {
        "short password": ({"password": "short", "password_again": "short"}, "管理员密码"),
        "passwords differ": ({"password_again": "something else"}, "两次输入的密码不一样"),
        "no school": ({"school": "  "}, "学校名称"),
        "bad time zone": ({"timezone": "Mars/Olympus"}, "时区"),
        "bad hub url": ({"hub_url": "ftp://hub"}, "中心校地址"),
        "bad fingerprint": ({"hub_key": "not-a-key"}, "中心校密钥指纹"),
    }
    for name, (fields, shown) in cases.items():
        r = do_setup(client, **fields)
        assert r.status_code == 400, name
        assert shown in r.text, name
        assert not box.setup.done, name
    assert client.post("/setup", data={"school": "x"}).status_code == 403  # no form token
    assert not box.setup.done


def test_setup_form_is_prefilled_from_the_provisioning_file(tmp_path: Path) -> None:
    provision = tmp_path / "classbox.toml"
    provision.write_text('school = "石门村小学"\nbox_name = "教室盒子"\ntimezone = "Asia/Urumqi"\n'
                         'hub_url = "http://hub.example:8080/"\nhub_key = "ed25519:0123456789abcdef"\n')
    app = create_app(Config.from_env({}, data_dir=tmp_path / "data", demo=False, provision_file=provision))
    box = app.extensions["classbox"]
    try:
        box.setup.start()
        page = app.test_client().get("/setup").text
        assert 'value="石门村小学"' in page and 'value="Asia/Urumqi"' in page
        assert 'value="http://hub.example:8080"' in page
        assert not box.setup.done  # no password hash: the technician still sets the password
    finally:
        box.close()


def test_a_provisioning_file_with_a_password_hash_sets_the_box_up(tmp_path: Path) -> None:
    provision = tmp_path / "classbox.toml"
    provision.write_text(f'school = "石门村小学"\nbox_name = "一号"\n'
                         f'admin_password_hash = "{hash_password(PASSWORD)}"\n')
    app = create_app(Config.from_env({}, data_dir=tmp_path / "data", demo=False, provision_file=provision))
    box = app.extensions["classbox"]
    try:
        box.setup.start()
        assert box.setup.done and box.setup.settings().school == "石门村小学"
        client = app.test_client()
        assert client.get("/setup").status_code == 404
        login = client.get("/admin/login")
        r = client.post("/admin/login", data={"name": "admin", "password": PASSWORD, "csrf_token": csrf_of(login.text)})
        assert r.status_code == 302 and client.get("/admin").status_code == 200
    finally:
        box.close()


@pytest.mark.parametrize(("content", "named"), [
    ('school = "x"\nbox_name = "y"\nadmin_password = "hunter22"\n', "may not carry a password"),
    ('school = "x"\nbox_name = "y"\nadmin_password_hash = "plain-text"\n', "not a password hash"),
    ('school = "x"\nbox_name = "y"\ncolour = "blue"\n', "unknown setting colour"),
    ('school = "x"\nbox_name = \n', "not valid TOML"),
    ('school = "x"\n', "box_name is required"),
    ('school = "x"\nbox_name = "y"\ntimezone = "Nowhere/Town"\n', "timezone"),
    ('school = 3\nbox_name = "y"\n', "school must be text"),
])
def test_bad_provisioning_files_are_named_and_nothing_is_applied(tmp_path: Path, content: str, named: str) -> None:
    provision = tmp_path / "classbox.toml"
    provision.write_text(content)
    with pytest.raises(ProvisionError, match=re.escape(named)) as caught:
        read_provision(provision)
    assert str(provision) in str(caught.value)
    app = create_app(Config.from_env({}, data_dir=tmp_path / "data", demo=False, provision_file=provision))
    box = app.extensions["classbox"]
    try:
        box.setup.start()
        assert not box.setup.done
        assert box.state.get("setup") is None
        page = app.test_client().get("/setup").text
        assert "有误，没有使用" in page and named.split()[0] in page
    finally:
        box.close()


def test_no_provisioning_file_is_fine(tmp_path: Path) -> None:
    assert read_provision(tmp_path / "absent.toml") is None
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProvisionError, match="not UTF-8"):
        read_provision(binary)


def test_the_images_example_file_applies_nothing_and_a_bom_is_fine(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "deploy" / "image" / "classbox.toml"
    assert read_provision(example) is None  # flashed and not yet filled in: no error on /setup
    with_bom = tmp_path / "classbox.toml"
    with_bom.write_bytes('\ufeffschool = "石门村小学"\nbox_name = "一号"\n'.encode())
    provision = read_provision(with_bom)
    assert provision is not None and provision.settings.school == "石门村小学"
