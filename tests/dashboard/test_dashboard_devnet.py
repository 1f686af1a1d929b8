"""The dashboard of `erc8004 run` indexing a devnet (anvil with our registries): a trigger
built in its editor fires on the chain's activity, the delivery and the events appear in
the open pages without a reload, and the agent's page shows the spec's summary of that
activity as the API gives it. The browser is Playwright's async API here (the test runs in
an event loop: the devnet and the command are driven from it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from erc8004_backend.devnet import Devnet
from tests.dashboard.conftest import chromium_executable
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.system import running_system

pytestmark = pytest.mark.subprocess
PASSWORD = "a long password"


async def sign_up(page: Page, url: str, username: str) -> None:
    await page.goto(url)
    await page.get_by_role("link", name="Sign up").click()
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Email").fill(f"{username}@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()


async def test_a_trigger_from_the_editor_fires_on_devnet_activity_and_shows_live(
    devnet: Devnet, database_url: str, tmp_path: Path
) -> None:
    sink = WebhookSink(secret="")
    async with (
        serve_asgi(sink) as sink_url,
        running_system(devnet, database_url, tmp_path) as system,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=chromium_executable())
        page = await browser.new_page()
        dashboard = str(system.client.base_url.join("/"))  # the API's root
        await sign_up(page, dashboard, "devnet_dash")

        await page.get_by_role("link", name="Triggers").click()
        await page.get_by_role("link", name="New trigger").click()
        await page.get_by_label("Name", exact=True).fill("Low scores on the devnet")
        await page.get_by_label("The trigger fires when", exact=True).select_option("any")
        first = page.locator("fieldset[data-field='conditions.any[0]']")
        await first.get_by_label("Condition type", exact=True).select_option("ema_threshold")
        await page.get_by_role("button", name="Add condition").click()  # a score below 50
        action = page.locator("fieldset[data-field='actions[0]']")
        await action.get_by_label("url", exact=True).fill(f"{sink_url}/hook")
        await page.get_by_role("button", name="Create trigger").click()
        await expect(page.get_by_text("The trigger is created. Its webhook secret")).to_be_visible()
        sink.secret = await page.locator(".secret-once code").inner_text()

        agent = await devnet.activity.register_agent("https://devnet-agent.example/a.json")
        await page.get_by_role("link", name="Deliveries").click()
        await devnet.activity.give_feedback(agent.agent_id, 12, tag1="devnet")
        # Indexed, fired and delivered: the open page shows it without a reload.
        delivered = page.get_by_role("row").filter(has_text="delivered")
        await expect(delivered).to_have_count(1, timeout=30_000)
        (received,) = sink.processed.values()
        assert received.signature_ok
        assert str(received.json()["event"]["agent_id"]) == str(agent.agent_id)

        await page.get_by_role("link", name="Live events").click()
        await expect(page.get_by_role("cell", name="NewFeedback")).to_have_count(1)
        await devnet.activity.give_feedback(agent.agent_id, 95, tag1="devnet-live")
        rows = page.get_by_role("row").filter(has_text="devnet-live")
        await expect(rows).to_have_count(1, timeout=30_000)

        # The agent's page: its getSummary over its clients (two feedback, 12 and 95) is the
        # API's, which the agents tests compare with the contract's own.
        await page.goto(f"{dashboard}#/agents/31337/{agent.agent_id}")
        summary = page.locator("#spec-summary")
        await expect(summary).to_be_visible(timeout=15_000)
        clients = (await page.get_by_label("Clients (one address a line)").input_value()).split()
        answer = await system.client.get(
            f"/agents/31337/{agent.agent_id}/reputation", headers=system.headers,
            params={"clients": clients},
        )  # fmt: skip
        spec = answer.json()["spec"]
        assert (spec["count"], spec["value"], spec["decimals"]) == (2, "53", 0)  # (12 + 95) / 2
        for term, key in (("Count", "count"), ("Value", "value"), ("Decimals", "decimals")):
            await expect(summary.locator(f"dd[data-key='{term}']")).to_have_text(str(spec[key]))
        await browser.close()
