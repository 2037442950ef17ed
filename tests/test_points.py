"""Teaching points: enrolment made by a box, registered by a hub."""

from __future__ import annotations

import json

import pytest

from classbox.box import Box
from classbox.errors import InvalidInput
from classbox.hub.points import Points, make_enrolment, parse_enrolment


def test_a_box_enrolment_registers_it_with_its_key_and_channel(box: Box) -> None:
    text = make_enrolment(box.box_id, "石门村教学点", "石门村小学", box.public_key_pem, "10.8.0.12:8080")
    points = Points(box.state)
    point = points.enrol(text)
    assert point.channel == f"point-{box.box_id}" and point.address == "http://10.8.0.12:8080"
    assert points.get(box.box_id) == point and points.all() == [point]
    again = points.enrol(text, address="")
    assert again.address == "" and again.enrolled_at == point.enrolled_at and len(points.all()) == 1


@pytest.mark.parametrize(("change", "named"), [
    ({"format": "other"}, "not a classbox enrolment"),
    ({"box_id": "XYZ"}, "box_id"),
    ({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, "public_key"),
    ({"address": "ftp://x/y"}, "address"),
    ({"name": 3}, "name must be text"),
])
def test_bad_enrolments_are_named_and_nothing_is_registered(box: Box, change: dict, named: str) -> None:
    good = json.loads(make_enrolment(box.box_id, "a", "b", box.public_key_pem))
    with pytest.raises(InvalidInput, match=named):
        Points(box.state).enrol(json.dumps({**good, **change}))
    assert Points(box.state).all() == []
    with pytest.raises(InvalidInput, match="not JSON"):
        parse_enrolment("box id 1234")
