"""The API's database sessions: how they plan."""

from __future__ import annotations

from erc8004_backend.api.app import Pool


async def test_the_api_plans_for_the_values_given_and_without_jit(pool: Pool) -> None:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT current_setting('jit') AS jit,"
            " current_setting('plan_cache_mode') AS plan_cache_mode"
        )
        settings = await cursor.fetchone()
    assert settings == {"jit": "off", "plan_cache_mode": "force_custom_plan"}
