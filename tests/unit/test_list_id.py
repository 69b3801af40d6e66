"""A promotion's List-Id (RFC 2919): the campaign's name and an ASCII list id."""

from __future__ import annotations

import pytest

from jobs.mail.message import list_id_header
from jobs.models import Campaign
from jobs.promotions.fanout import list_id


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("default", "default <default.shop.example.com>"),
        ("Été 2027!", "Été 2027! <ete-2027.shop.example.com>"),
        ("用户", "用户 <campaign-7.shop.example.com>"),
    ],
)
def test_list_id_is_the_name_and_an_ascii_id(name: str, expected: str) -> None:
    assert list_id(Campaign(id=7, name=name), "shop.example.com") == expected


def test_a_non_ascii_list_name_is_encoded_and_the_id_is_not() -> None:
    line = list_id_header("List-Id", "Été 2027! <ete-2027.shop.example.com>")
    assert line == "List-Id: =?utf-8?b?w4l0w6kgMjAyNyE=?= <ete-2027.shop.example.com>\r\n"
