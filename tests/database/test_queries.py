import pytest

from erc8004_backend.database.queries import parse_queries


def test_parses_named_blocks_with_their_comments() -> None:
    text = "-- first --\n-- what it does\nSELECT 1\n\n-- second --\nSELECT 2;\n"
    assert parse_queries(text) == {
        "first": b"-- what it does\nSELECT 1",
        "second": b"SELECT 2;",
    }


def test_rejects_a_name_defined_twice() -> None:
    with pytest.raises(ValueError, match="'a' is defined twice"):
        parse_queries("-- a --\nSELECT 1\n-- a --\nSELECT 2")
