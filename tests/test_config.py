"""Settings' rate limits: the defaults, which the validator takes without parsing them (so
that no command imports limits for them), parse; a value that does not still fails."""

from __future__ import annotations

import pytest
from limits import parse_many
from pydantic import ValidationError

from erc8004_backend.config import Settings

RATE_LIMITS = ("rate_limit_user", "rate_limit_ip", "rate_limit_login", "rate_limit_public")


@pytest.mark.parametrize("name", RATE_LIMITS)
def test_the_default_rate_limits_parse(name: str) -> None:
    default = Settings.model_fields[name].default
    assert isinstance(default, str)
    assert parse_many(default)


@pytest.mark.parametrize("name", RATE_LIMITS)
def test_a_rate_limit_that_does_not_parse_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="is not a rate limit like '600/minute'"):
        Settings(**{name: "600 a minute"})  # type: ignore[arg-type]
    assert getattr(Settings(**{name: "5/second"}), name) == "5/second"  # type: ignore[arg-type]
