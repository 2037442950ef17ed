"""The API contract: classbox/openapi.json describes every /api/v1 route, and a property-based run finds no 5xx.

Schemathesis generates requests from the description (its examples, then boundary cases, then valid and invalid
data) and sends them to the real app in-process, on a hub that is set up and holds the demo channel. Most
requests carry real credentials (an admin session and its CSRF token, the control token, a paired phone's
cookie, a registered box's or the hub's signature), the real room and real lesson ids, so that bodies get past
the door and are checked for what they say; the rest go without, and must be refused as the description says.
"""

from __future__ import annotations

import json
import re
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from classbox import create_app, keys, signing
from classbox.actions import ACTIONS
from classbox.box import DEMO_KEY, DEMO_ROOT, Box
from classbox.classroom import DEFAULT_ROOM
from classbox.config import Config
from classbox.hub.points import Points, channel_for, make_enrolment
from classbox.setup import SchoolSettings
from classbox.web.control import TOKEN_HEADER
from classbox.web.rooms import PAIR_COOKIE

PASSWORD = "correct horse 1"
LESSONS = ("demo-g1-chinese-1", "demo-g1-chinese-2", "demo-g2-math-1", "demo-g2-math-2")
POINT_ID = "0123456789abcdef"  # a teaching point's box, registered on the hub
HUB_ID = "fedcba9876543210"
MAX_EXAMPLES = 100  # per operation, in the fuzzing phase; the examples and coverage phases add their own
MAX_WAIT = 0.2  # a screen's long poll, shortened: a wait for a change nobody makes would take 25 s
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Deterministic: Hypothesis derandomized and without its example database. No stateful phase: it would
# chain operations by links the description does not declare.
SCHEMATHESIS_CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none", "mode": "all"},
    "phases": {"stateful": {"enabled": False}},
}


def packaged_spec() -> dict[str, Any]:
    """Return the OpenAPI description shipped in the package."""
    return json.loads(resources.files("classbox").joinpath("openapi.json").read_text(encoding="utf-8"))


@dataclass
class Contract:
    """A running hub, and every credential its API asks for."""

    app: Flask
    box: Box
    admin_session: str
    csrf: str
    control_token: str
    remote_token: str
    hub_key: Ed25519PrivateKey
    point_key: Ed25519PrivateKey
    nowhere: str  # a folder that does not exist: every sync source a request names is replaced by it

    def prepare(self, case: schemathesis.Case) -> dict[str, Any]:
        """Point most cases at the real room, lessons and credentials; return what to send besides the case.

        Which cases go without is decided by the case's own data, so that Hypothesis replays a case exactly.
        """
        seen = json.dumps([case.path_parameters, case.query, case.headers, case.cookies,
                           None if isinstance(case.body, NotSet) else case.body], sort_keys=True, default=repr)
        for made_here in (self.nowhere, self.admin_session, self.csrf, self.control_token, self.remote_token):
            seen = seen.replace(made_here, "")  # a case seen again may hold what an earlier call put in it
        pick = zlib.crc32(seen.encode())
        real = pick % 5 != 0
        path = case.operation.path
        parameters = case.path_parameters or {}
        if real and "room" in parameters:
            parameters["room"] = DEFAULT_ROOM
        if real and "lesson_id" in parameters:
            parameters["lesson_id"] = LESSONS[pick % len(LESSONS)]
        body = case.body if isinstance(case.body, dict) else None
        if body is not None:
            _keep_safe(path, body, self.nowhere)
            if real:
                _real_names(body, LESSONS[pick % len(LESSONS)])
                if path == "/reports":
                    body["box_id"] = POINT_ID
        if path == "/rooms/{room}/state" and "after" in (case.query or {}):
            case.query["wait"] = _shortened(case.query.get("wait"))
        # A phone on the school LAN; or, with credentials, the box itself, as the classbox command is.
        sender = {"environ_base": {"REMOTE_ADDR": "127.0.0.1" if real else "192.168.1.23"}}
        if not real:
            return sender  # with whatever Schemathesis generated for the credentials, if anything
        security = {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}
        if "adminSession" in security:
            headers = {"X-CSRF-Token": self.csrf} if pick % 5 != 1 else {}  # now and then without the token
            return {**sender, "cookies": {"classbox_session": self.admin_session}, "headers": headers}
        if "controlToken" in security:
            return {**sender, "headers": {TOKEN_HEADER: self.control_token}}
        if "remotePairing" in security:
            return {**sender, "cookies": {PAIR_COOKIE: self.remote_token}}
        if "signature" in security:
            data = _wire_body(case.body)
            if path == "/reports":
                headers = signing.sign_request(self.point_key, POINT_ID, "POST", "/api/v1/reports", data)
            else:
                headers = signing.sign_request(self.hub_key, HUB_ID, "POST", "/api/v1/notify", data)
            return {**sender, "headers": headers, **({"data": data} if data else {})}
        return sender


def _keep_safe(path: str, body: dict[str, Any], nowhere: str) -> None:
    """Keep the run on this machine and its room in place, whatever the body says."""
    if path == "/sync" and isinstance(body.get("sources"), list):
        # The box fetches from any address a request names: here, only ever from nowhere.
        body["sources"] = [nowhere if isinstance(s, str) else s for s in body["sources"]]
    if path.endswith("/rooms") and isinstance(body.get("name"), str) and body["name"].strip() == DEFAULT_ROOM:
        body["name"] = "二号教室"  # the room every other request names stays


def _real_names(body: dict[str, Any], lesson: str) -> None:
    """Name a lesson, the room, the demo channel and its folder on the box wherever a body names one."""
    for name, value in (("lesson", lesson), ("room", DEFAULT_ROOM), ("channel", "demo"), ("root", str(DEMO_ROOT))):
        if isinstance(body.get(name), str):
            body[name] = value
    args = body.get("args")
    if body.get("cmd") == "open" and isinstance(args, dict) and "lesson" in args:
        args["lesson"] = lesson


def _shortened(wait: Any) -> Any:
    """Return a long poll's wait, at most MAX_WAIT seconds; leave a value that is not a number as it is."""
    if isinstance(wait, list):
        return [_shortened(w) for w in wait]
    try:
        seconds = float(str(wait)) if wait is not None else 25.0
    except ValueError:
        return wait
    return wait if seconds <= MAX_WAIT else MAX_WAIT


def _wire_body(body: Any) -> bytes:
    """Return the bytes a case's body goes out as, so that they can be signed (bytes as they are, else JSON)."""
    if isinstance(body, NotSet):
        return b""
    return body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()


def closed_port() -> int:
    """Return a loopback port nobody listens on (one the system just handed out and took back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_hub(home: Path) -> Iterator[Contract]:
    """Run a set-up hub holding the demo channel, its own hub link, a registered point, an admin, a paired phone."""
    config = Config.from_env({}, data_dir=home / "data", demo=False, host="127.0.0.1", port=0, role="hub",
                             usb_roots=str(home / "media"))
    app = create_app(config)
    box: Box = app.extensions["classbox"]
    worker = app.extensions["classbox_sync"]
    try:
        box.add_channel(DEMO_ROOT, keys.load_public(DEMO_KEY), "demo")
        hub_key, point_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        # The box's own hub is on this machine, on a port nobody listens on: a sync from it fails at once.
        box.setup.complete(SchoolSettings(school="石门村小学", box_name="一号盒子",
                                          hub_url=f"http://127.0.0.1:{closed_port()}",
                                          hub_key=keys.key_id(hub_key.public_key())), password=PASSWORD)
        box.pin_key(channel_for(box.box_id), hub_key.public_key())  # so it takes the hub's notices
        Points(box.state).enrol(make_enrolment(POINT_ID, "二号盒子", "石门村小学",
                                               keys.public_pem(point_key.public_key()).decode()))
        session = box.sessions.start(box.accounts.login("admin", PASSWORD))
        remote_token, _ = box.classroom.pair(DEFAULT_ROOM, box.classroom.code(DEFAULT_ROOM), "127.0.0.1")
        worker.start()  # as `serve` does: POST /sync queues a run only while the worker runs
        yield Contract(app, box, session.id, session.csrf, app.config["CONTROL_TOKEN"], remote_token, hub_key,
                       point_key, str(home / "no-such-mirror"))
    finally:
        worker.stop()
        box.close()


@pytest.fixture
def contract(tmp_path: Path) -> Iterator[Contract]:
    """Return a running hub, Hypothesis keeping its own files (Unicode tables, constants) in the test's folder."""
    set_hypothesis_home_dir(tmp_path / "hypothesis")
    try:
        with running_hub(tmp_path) as contract:
            yield contract
    finally:
        set_hypothesis_home_dir(None)


@pytest.fixture
def contract_schema(contract: Contract, request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    """Load the description shipped in the package, check that it is valid OpenAPI, and aim it at the hub."""
    # Schemathesis 4.32 names each operation's subtest through Node._nodeid, which pytest 9.2 no longer has.
    request.node._nodeid = request.node.nodeid
    schema = schemathesis.openapi.from_dict(packaged_spec(), config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG))
    schema.validate()
    schema.app = contract.app  # in-process, through WSGI
    return schema


lazy_schema = schemathesis.pytest.from_fixture("contract_schema")


@lazy_schema.parametrize()
def _keeps_its_contract(case: schemathesis.Case, contract: Contract) -> None:
    case.call_and_validate(checks=CHECKS, **contract.prepare(case))


@pytest.mark.slow
# The sync worker draws its backoff's jitter from the random module, in its own thread, while Hypothesis draws a
# case; Hypothesis takes that for a strategy using `random`. Nothing here generates data with it.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning")
def test_every_operation_keeps_its_contract(request: pytest.FixtureRequest) -> None:
    # Run from here, each operation a subtest, rather than collected as a Hypothesis test: pytest's Hypothesis
    # plugin would then scan the code for constants at collection and cache them in ./.hypothesis.
    _keeps_its_contract(request=request)


def test_the_description_is_valid_openapi_and_served_as_shipped(client: FlaskClient) -> None:
    shipped = packaged_spec()
    schemathesis.openapi.from_dict(shipped).validate()  # raises on a document that breaks the OpenAPI schema
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.json == shipped


def test_the_description_names_every_api_route_and_no_other(app: Flask) -> None:
    spec = packaged_spec()
    base = spec["servers"][0]["url"]
    described = {(method.upper(), base + path) for path, operations in spec["paths"].items() for method in operations}
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(base + "/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        # One path per action: each takes its own body.
        paths = [path.replace("{action}", action) for action in ACTIONS] if "{action}" in path else [path]
        served |= {(method, p) for method in rule.methods or () if method not in ("HEAD", "OPTIONS") for p in paths}
    assert described == served


def test_every_error_is_described_as_the_json_error_shape() -> None:
    spec = packaged_spec()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            if operation.get("security"):
                assert {"401", "403"} & set(answers), f"{method} {path} needs credentials but describes no refusal"
            for status, answer in answers.items():
                if status.startswith("2"):
                    continue
                if "$ref" in answer:
                    answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
                assert answer["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _command(client: FlaskClient, n: int, text: str) -> Any:
    body = f'{{"client": "phone", "n": {n}, {text}}}'
    return client.post(f"/api/v1/rooms/{DEFAULT_ROOM}/commands", data=body, content_type="application/json")


def test_a_room_refuses_numbers_it_cannot_keep(tmp_path: Path) -> None:
    with running_hub(tmp_path) as hub:
        phone = hub.app.test_client()
        phone.set_cookie(PAIR_COOKIE, hub.remote_token)
        assert _command(phone, 1, f'"cmd": "open", "args": {{"lesson": "{LESSONS[0]}"}}').status_code == 200
        huge = "1" + "0" * 400  # more than a float holds: it used to answer 500
        for n, text in enumerate([f'"cmd": "seek", "args": {{"by": {huge}}}',
                                  f'"cmd": "remove_point", "args": {{"at": {huge}}}',
                                  '"cmd": "seek", "args": {"by": NaN}', '"cmd": "seek", "args": {"by": Infinity}',
                                  # Twice this used to leave the room at an infinite position, refusing everything.
                                  '"cmd": "seek", "args": {"by": 1e308}', '"cmd": "seek", "args": {"by": 1e308}'],
                                 start=2):
            r = _command(phone, n, text)
            assert r.status_code == 400 and r.json["code"] == "invalid_input", text
        r = phone.post(f"/api/v1/rooms/{DEFAULT_ROOM}/report", data=f'{{"lesson": "{LESSONS[0]}", "position": {huge}}}',
                       content_type="application/json")
        assert r.status_code == 400
        state = json.loads(phone.get(f"/api/v1/rooms/{DEFAULT_ROOM}/state").text,
                           parse_constant=lambda name: pytest.fail(f"the state holds {name}"))
        assert state["position"] == 0 and state["lesson"] == LESSONS[0]
        assert _command(phone, 10, '"cmd": "play"').json["playing"] is True


def test_a_report_with_a_number_no_float_holds_is_refused(tmp_path: Path) -> None:
    with running_hub(tmp_path) as hub:
        batch = {"box_id": POINT_ID, "first_seq": 1, "last_seq": 1, "snapshot": {},
                 "events": [{"seq": 1, "time": 1.5, "kind": "play", "room": DEFAULT_ROOM, "lesson": None,
                             "position": None, "detail": {}}]}
        body = json.dumps(batch).replace('"time": 1.5', '"time": 1' + "0" * 400).encode()  # no float holds it
        headers = signing.sign_request(hub.point_key, POINT_ID, "POST", "/api/v1/reports", body)
        r = hub.app.test_client().post("/api/v1/reports", data=body, headers=headers, content_type="application/json")
        assert r.status_code == 400 and r.json["code"] == "invalid_input"  # it used to answer 500
