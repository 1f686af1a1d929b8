"""The dashboard of `erc8004 run` indexing a devnet (anvil with our registries): a trigger
built in its editor (an `any` group with a stateful condition) sends a test delivery, fires
on the chain's activity, and the delivery and the events appear in the open pages without a
reload; a dead delivery is redelivered from its page; the agent's page shows the spec's
summary of that activity as the API gives it; a hostile registration file and hostile tags
on the chain are shown as text, and no script of theirs runs. The browser is Playwright's async API here (the test runs in
an event loop: the devnet and the command are driven from it)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from erc8004_backend.devnet import Devnet
from tests.dashboard.conftest import chromium_executable
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.system import running_system
from tests.support.waiting import eventually

pytestmark = pytest.mark.subprocess
PASSWORD = "a long password"
# Values that would run script if they were ever parsed as markup.
HOSTILE_NAME = '<img src=x onerror="window.__xss = 1">'
HOSTILE_TAG = "<script>window.__xss = 2</script>"
HOSTILE_SERVICE = "<svg onload=window.__xss=3>"


def data_uri(document: object) -> str:
    raw = json.dumps(document).encode()
    return "data:application/json;base64," + base64.b64encode(raw).decode()


async def sign_up(page: Page, url: str, username: str) -> None:
    await page.goto(url)
    await page.get_by_role("link", name="Sign up").click()
    # The sign-in form has a Username field too: fill the sign-up form's, once it is there.
    await expect(page.get_by_role("heading", name="Sign up")).to_be_visible()
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
        # One attempt per job: a failure is dead at once (for the redelivery below).
        await action.get_by_text("Attempts, backoff and noise control").click()
        await action.get_by_label("max_attempts", exact=True).fill("1")
        await page.get_by_role("button", name="Create trigger").click()
        await expect(page.get_by_text("The trigger is created. Its webhook secret")).to_be_visible()
        sink.secret = await page.locator(".secret-once code").inner_text()
        await page.get_by_role("button", name="Send a test delivery").click()
        await expect(page.get_by_text("Test delivery: success")).to_be_visible()
        (test_delivery,) = sink.processed.values()
        assert test_delivery.signature_ok
        assert test_delivery.json()["test"] is True

        agent = await devnet.activity.register_agent("https://devnet-agent.example/a.json")
        await page.get_by_role("link", name="Deliveries").click()
        await devnet.activity.give_feedback(agent.agent_id, 12, tag1="devnet")
        # Indexed, fired and delivered: the open page shows it without a reload.
        delivered = page.get_by_role("row").filter(has_text="delivered")
        await expect(delivered).to_have_count(1, timeout=30_000)
        received = [r for r in sink.processed.values() if "test" not in r.json()]
        assert [r.signature_ok for r in received] == [True]
        assert str(received[0].json()["event"]["agent_id"]) == str(agent.agent_id)

        # The next firing fails (the receiver answers 500): dead after its one attempt, and
        # delivered when redelivered from its page, with the same key.
        sink.fail_next(1, 500)
        await devnet.activity.give_feedback(agent.agent_id, 5, tag1="devnet")
        dead = page.get_by_role("row").filter(has_text="dead")
        await expect(dead).to_have_count(1, timeout=30_000)
        await dead.get_by_role("link").click()
        await expect(page.get_by_role("heading", name="Attempt 1: failed")).to_be_visible()
        await page.get_by_role("button", name="Redeliver").click()
        await expect(page.get_by_role("heading", name="Attempt 2: success")).to_be_visible(
            timeout=30_000
        )
        assert sink.processed[sink.received[-1].key].signature_ok

        await page.get_by_role("link", name="Live events").click()
        await expect(page.get_by_role("cell", name="NewFeedback")).to_have_count(2)
        await devnet.activity.give_feedback(agent.agent_id, 95, tag1="devnet-live")
        rows = page.get_by_role("row").filter(has_text="devnet-live")
        await expect(rows).to_have_count(1, timeout=30_000)

        # The agent's page: its getSummary over its clients (three feedback, 12, 5 and 95) is
        # the API's, which the agents tests compare with the contract's own.
        await page.goto(f"{dashboard}#/agents/31337/{agent.agent_id}")
        summary = page.locator("#spec-summary")
        await expect(summary).to_be_visible(timeout=15_000)
        clients = (await page.get_by_label("Clients (one address a line)").input_value()).split()
        answer = await system.client.get(
            f"/agents/31337/{agent.agent_id}/reputation", headers=system.headers,
            params={"clients": clients},
        )  # fmt: skip
        spec = answer.json()["spec"]
        assert (spec["count"], spec["value"], spec["decimals"]) == (3, "37", 0)  # 112 / 3
        for term, key in (("Count", "count"), ("Value", "value"), ("Decimals", "decimals")):
            await expect(summary.locator(f"dd[data-key='{term}']")).to_have_text(str(spec[key]))

        # Hostile text from the chain: a registration file and feedback tags, as text.
        document = {"name": HOSTILE_NAME, "description": HOSTILE_TAG, "active": True,
                    "services": [{"name": HOSTILE_SERVICE,
                                  "endpoint": "javascript:window.__xss=4"}]}  # fmt: skip
        hostile = await devnet.activity.register_agent(data_uri(document))
        await devnet.activity.give_feedback(hostile.agent_id, 90, tag1=HOSTILE_TAG,
                                            tag2="<b>bold</b>")  # fmt: skip
        profile_path = f"/agents/31337/{hostile.agent_id}"

        async def indexed_with_tags() -> bool:  # the file fetched, the feedback indexed
            profile = await system.client.get(profile_path, headers=system.headers)
            feedback = await system.client.get(f"{profile_path}/feedback", headers=system.headers)
            # (in the values as parsed: JSON escapes the name's quotes)
            return HOSTILE_NAME in str(profile.json()) and HOSTILE_TAG in str(feedback.json())

        await eventually(indexed_with_tags, 30, what="the hostile agent indexed")
        await page.goto(f"{dashboard}#/agents/31337/{hostile.agent_id}")
        heading = page.get_by_role("heading", level=1)
        await expect(heading).to_have_text(f"Agent 31337 / {hostile.agent_id}: {HOSTILE_NAME}",
                                           timeout=30_000)  # fmt: skip
        await expect(page.get_by_role("cell", name=HOSTILE_SERVICE, exact=True)).to_be_visible()
        await expect(page.get_by_role("cell", name=f"{HOSTILE_TAG}, <b>bold</b>", exact=True)
                     ).to_be_visible(timeout=30_000)  # fmt: skip
        assert await page.locator("main a[href^='javascript']").count() == 0
        assert await page.evaluate("window.__xss") is None  # no script of theirs ran
        await browser.close()
