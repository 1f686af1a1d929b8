"""The dashboard in Chromium: signing up and in, each page, the trigger editor, live
deliveries and events, an agent's page, hostile values rendered as text, and an
accessibility check (axe-core) of every page, with a screenshot of each for the README."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.dashboard.conftest import Sink, System, accessibility_problems, screenshot
from tests.support.agent_events import ChainEvents, address

# A browser and the whole system: seconds per test, outside the fast inner loop.
pytestmark = pytest.mark.slow

PASSWORD = "a long password"
OWNER = address(0xA1)
CLIENT = address(0xC1)


def sign_up(page: Page, system: System, username: str) -> None:
    page.goto(system.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("link", name="Sign up").click()
    # The sign-in form has a Username field too: fill the sign-up form's, once it is there.
    expect(page.get_by_role("heading", name="Sign up")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()


def field_error(page: Page, label: str) -> Locator:
    """The error message shown under the control labelled `label`."""
    control_id = page.get_by_label(label, exact=True).get_attribute("id")
    return page.locator(f"[id='{control_id}-error']")


def check_page(page: Page, name: str) -> None:
    """No serious or critical accessibility problem, no script error; a screenshot."""
    assert accessibility_problems(page) == []
    assert page.problems == []  # type: ignore[attr-defined]
    screenshot(page, name)


def test_sign_up_sign_out_and_sign_in(page: Page, system: System) -> None:
    page.goto(system.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    check_page(page, "sign-in")
    page.get_by_role("link", name="Sign up").click()
    expect(page.get_by_role("heading", name="Sign up")).to_be_visible()
    # The API's validation errors, at their fields.
    page.get_by_label("Username").fill("x")
    page.get_by_label("Email").fill("not an email")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    expect(field_error(page, "Username")).to_contain_text("should match pattern")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    check_page(page, "sign-up")

    sign_up(page, system, "ada_dash")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert cookies["erc8004_session"]["httpOnly"] is True
    assert cookies["erc8004_session"]["sameSite"] == "Lax"
    assert cookies["erc8004_csrf"]["httpOnly"] is False
    # The page's scripts cannot read the session cookie.
    assert "erc8004_session" not in page.evaluate("document.cookie")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert "erc8004_session" not in {cookie["name"] for cookie in page.context.cookies()}
    page.get_by_label("Username or email").fill("ada_dash")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong username or password")
    # By keyboard alone: the page's heading has the focus, the form comes next.
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Username or email")).to_be_focused()
    page.keyboard.type("ada_dash")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Signed in as ada_dash")).to_be_visible()
    expect(page).to_have_url(re.compile(r"#/status$"))


def test_pages_fit_a_phone_screen(page: Page, system: System) -> None:
    system.events(lambda chain: chain.register(OWNER, "https://phone.example/a.json"))
    sign_up(page, system, "phone_dash")
    page.set_viewport_size({"width": 390, "height": 844})
    for link, name in (("Status", "phone-status"), ("Triggers", "phone-triggers"),
                       ("Agents", "phone-agents")):  # fmt: skip
        page.get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(link)
        page.wait_for_load_state("networkidle")
        # Nothing wider than the screen: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, link
        check_page(page, name)


def choose(page: Page, label: str, value: str, *, within: Locator | None = None) -> None:
    (within or page).get_by_label(label, exact=True).select_option(value)


def test_a_trigger_built_in_the_editor_fires_and_its_deliveries_show_live(
    page: Page, system: System, sink: Sink
) -> None:
    sign_up(page, system, "grace_dash")
    page.get_by_role("link", name="Triggers").click()
    page.get_by_role("link", name="New trigger").click()
    page.get_by_label("Name", exact=True).fill("Low average or very low score")
    # Any of two conditions: a moving average (stateful) or a single low score.
    choose(page, "The trigger fires when", "any")
    first = page.locator("fieldset[data-field='conditions.any[0]']")
    choose(page, "Condition type", "ema_threshold", within=first)
    expect(
        page.get_by_label("Stateful (moving averages, rates, summaries, silences)")
    ).to_be_checked()
    # Its config's settings as controls: a moving average over 3 feedback.
    expect(first.get_by_label("window_size", exact=True)).to_have_value("5")
    first.get_by_label("window_size", exact=True).fill("3")
    page.get_by_role("button", name="Add condition").click()
    second = page.locator("fieldset[data-field='conditions.any[1]']")
    expect(second.get_by_label("Field", exact=True)).to_have_value("score")
    second.get_by_label("Value", exact=True).fill("very low")
    action = page.locator("fieldset[data-field='actions[0]']")
    action.get_by_label("url", exact=True).fill(sink.url)
    # One attempt per job: a failure is dead at once (for the redelivery below).
    action.get_by_text("Attempts, backoff and noise control").click()
    action.get_by_label("max_attempts", exact=True).fill("1")
    json_view = page.locator("#trigger-json")
    assert '"any": [' in json_view.input_value()
    assert '"window_size": 3' in json_view.input_value()
    page.get_by_role("button", name="Create trigger").click()
    # The API refuses the value; its message is shown in the condition it names.
    expect(second.locator(".field-error").first).to_contain_text("number")
    expect(page.get_by_role("alert").first).to_be_visible()
    second.get_by_label("Value", exact=True).fill("20")
    page.get_by_role("button", name="Create trigger").click()

    expect(page.get_by_text("The trigger is created. Its webhook secret")).to_be_visible()
    sink.target.secret = page.locator(".secret-once code").inner_text()
    check_page(page, "trigger-editor")

    page.get_by_role("button", name="Send a test delivery").click()
    expect(page.get_by_text("Test delivery: success")).to_be_visible()
    assert [r.signature_ok for r in sink.target.received] == [True]
    assert sink.target.received[0].json()["test"] is True

    # Activity on the chain: an agent and a score of 10 from a client fire it.
    agent: dict[str, int] = {}

    async def activity(chain: ChainEvents) -> None:
        agent["id"] = await chain.register(OWNER, "https://agent.example/a.json")
        await chain.feedback(agent["id"], CLIENT, 10)

    system.events(activity)
    page.get_by_role("link", name="Deliveries", exact=True).click()
    delivered = page.get_by_role("row").filter(has_text="delivered")
    expect(delivered).to_have_count(1, timeout=15_000)  # appears without a reload
    check_page(page, "deliveries")

    # The next one fails (the receiver answers 500) and is dead after its one attempt.
    sink.target.fail_next(1, 500)
    system.events(lambda chain: chain.feedback(agent["id"], CLIENT, 5))
    dead = page.get_by_role("row").filter(has_text="dead")
    expect(dead).to_have_count(1, timeout=15_000)
    dead.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Attempt 1: failed")).to_be_visible()
    expect(page.get_by_role("heading", name="Request")).to_be_visible()
    expect(page.locator("pre.json").filter(has_text=sink.url)).to_have_count(1)
    check_page(page, "delivery")
    page.get_by_role("button", name="Redeliver").click()
    expect(page.get_by_text("Queued again")).to_be_visible()
    expect(page.get_by_role("heading", name="Attempt 2: success")).to_be_visible(timeout=15_000)
    dead_key = sink.target.received[-1].key
    assert sink.target.processed[dead_key].signature_ok

    # Another dead one, queued again with the trigger's other dead ones, from the list.
    sink.target.fail_next(1, 500)
    system.events(lambda chain: chain.feedback(agent["id"], CLIENT, 7))
    page.get_by_role("link", name="Deliveries", exact=True).click()
    page.get_by_label("Trigger", exact=True).select_option(label="Low average or very low score")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("row").filter(has_text="dead")).to_have_count(1, timeout=15_000)
    page.get_by_role("button", name="Redeliver the trigger's dead deliveries").click()
    expect(page.get_by_text("Queued again: 1 dead deliveries")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="delivered")).to_have_count(3, timeout=15_000)

    # The list: the trigger's state and its deliveries of the last 24 hours (the test
    # delivery, three firings, two redeliveries; two failed).
    page.get_by_role("link", name="Triggers").click()
    row = page.get_by_role("row").filter(has_text="Low average or very low score")
    expect(row.locator("td[data-label='Delivered, 24 h']")).to_have_text("4")
    expect(row.locator("td[data-label='Failed, 24 h']")).to_have_text("2")
    check_page(page, "triggers")

    # Against history: the three feedback fire it.
    row.get_by_role("link", name="Low average or very low score", exact=True).click()
    backtest = page.get_by_role("form", name="Test against history")
    backtest.get_by_label("From block").fill("0")
    backtest.get_by_role("button", name="Test against history").click()
    expect(backtest.get_by_text("fired 3 times")).to_be_visible()

    # History on purpose: a replay (the events have their deliveries: it adds none).
    replay = page.get_by_role("form", name="Replay history")
    replay.get_by_role("button", name="Replay").click()
    expect(replay.get_by_role("alert")).to_contain_text("exactly one of from_block and from_time")
    replay.get_by_label("From block").fill("0")
    replay.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("table", name="Replays").get_by_role("row")).to_have_count(2)


# Values that would run script if they were ever parsed as markup.
HOSTILE_NAME = '<img src=x onerror="window.__xss = 1">'
HOSTILE_TAG = "<script>window.__xss = 2</script>"
HOSTILE_SERVICE = "<svg onload=window.__xss=3>"
HOSTILE_TRIGGER = "<img src=x onerror=window.__xss=4>"
CLIENT_B = address(0xC2)


def test_hostile_values_render_as_text_and_an_agents_summary_is_the_apis(
    page: Page, system: System
) -> None:
    agent: dict[str, int] = {}
    uri = "https://hostile.example/agent.json"

    async def hostile(chain: ChainEvents) -> None:
        agent["id"] = await chain.register(OWNER, uri)
        await chain.feedback(agent["id"], CLIENT, 90, 0, HOSTILE_TAG, "<b>bold</b>")
        await chain.feedback(agent["id"], CLIENT_B, 455, 1, "speed")
        document = {"name": HOSTILE_NAME, "description": HOSTILE_TAG, "active": True,
                    "services": [{"name": HOSTILE_SERVICE,
                                  "endpoint": "javascript:window.__xss=5"}]}  # fmt: skip
        await chain.registration(agent["id"], uri, document)
        # The services the indexer's fetcher keeps beside the document.
        await chain.conn.execute(
            "UPDATE agent_registrations SET services = document -> 'services' WHERE agent_id = %s",
            [agent["id"]],
        )

    system.events(hostile)
    sign_up(page, system, "hostile_dash")
    page.get_by_role("link", name="Triggers").click()
    page.get_by_role("link", name="New trigger").click()
    page.get_by_label("Name", exact=True).fill(HOSTILE_TRIGGER)
    page.get_by_role("button", name="Create trigger").click()
    expect(page.get_by_text("The trigger is created.")).to_be_visible()
    page.get_by_role("link", name="All triggers").click()
    expect(page.get_by_role("link", name=HOSTILE_TRIGGER, exact=True)).to_be_visible()

    page.get_by_role("link", name="Agents").click()
    page.get_by_label("Name or description").fill("onerror")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("cell", name=HOSTILE_NAME, exact=True)).to_be_visible()
    check_page(page, "agents")
    page.get_by_role("link", name=f"31337 / {agent['id']}", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Agent 31337 / {agent['id']}: {HOSTILE_NAME}"
    )
    expect(page.get_by_role("cell", name=HOSTILE_SERVICE, exact=True)).to_be_visible()
    # Not a link: only http(s) URLs are.
    expect(page.get_by_role("cell", name="javascript:window.__xss=5", exact=True)).to_be_visible()
    assert page.locator("main a[href^='javascript']").count() == 0
    expect(page.get_by_role("cell", name=f"{HOSTILE_TAG}, <b>bold</b>", exact=True)).to_be_visible()

    # The spec's summary over the agent's clients, as the API computes it.
    summary = page.locator("#spec-summary")
    expect(summary).to_be_visible()
    answer = page.request.get(
        f"{system.url}api/v1/agents/31337/{agent['id']}/reputation"
        f"?clients={CLIENT}&clients={CLIENT_B}"
    ).json()["spec"]
    for term, key in (("Count", "count"), ("Value", "value"), ("Decimals", "decimals")):
        expect(summary.locator(f"dd[data-key='{term}']")).to_have_text(str(answer[key]))
    assert answer["count"] == 2
    expect(page.locator("figure.chart canvas")).to_have_count(2)
    history = page.get_by_role("table", name="Identity changes")
    expect(history.get_by_role("cell", name="registered", exact=True)).to_have_count(1)
    check_page(page, "agent")

    # No markup was made of any of it, and no script ran.
    assert page.locator("main img, main svg, main script, main b").count() == 0
    assert page.evaluate("window.__xss") is None


def test_status_account_and_live_events(page: Page, system: System) -> None:
    system.events(lambda chain: chain.register(OWNER, "https://one.example/a.json"))
    sign_up(page, system, "lin_dash")
    expect(page.get_by_role("cell", name="31337", exact=True)).to_be_visible()
    check_page(page, "status")

    page.get_by_role("link", name="Live events").click()
    expect(page.get_by_text("Live.")).to_be_visible()
    system.events(lambda chain: chain.register(OWNER, "https://two.example/a.json"))
    expect(page.get_by_role("cell", name="https://two.example/a.json", exact=False)).to_have_count(
        1
    )
    page.get_by_role("button", name="Pause").click()
    system.events(lambda chain: chain.register(OWNER, "https://three.example/a.json"))
    page.wait_for_timeout(1500)
    expect(
        page.get_by_role("cell", name="https://three.example/a.json", exact=False)
    ).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(
        page.get_by_role("cell", name="https://three.example/a.json", exact=False)
    ).to_have_count(1)
    check_page(page, "events")

    page.get_by_role("link", name="Account").click()
    page.get_by_label("Name of the new key").fill("grafana")
    page.get_by_role("button", name="Create key").click()
    key = page.locator(".secret-once code").inner_text()
    assert key.startswith("ek_")
    assert page.request.get(f"{system.url}api/v1/me", headers={"Authorization": f"Bearer {key}"}).ok
    check_page(page, "account")
    page.get_by_role("button", name="Revoke the key grafana").click()
    expect(page.get_by_text("The key grafana is revoked.")).to_be_visible()
    assert (
        page.request.get(
            f"{system.url}api/v1/me", headers={"Authorization": f"Bearer {key}"}
        ).status
        == 401
    )

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill("an even longer password")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Password changed")).to_be_visible()
    # The session moved to the new token: still signed in.
    page.get_by_role("link", name="Status").click()
    expect(page.get_by_role("cell", name="31337", exact=True)).to_be_visible()


def test_the_json_view_writes_the_whole_language(page: Page, system: System) -> None:
    """A trigger written in the JSON view (nested all / not groups, a change condition on the
    identity registry, a Slack action) becomes the form, and is stored as written."""
    sign_up(page, system, "json_dash")
    page.get_by_role("link", name="Triggers").click()
    page.get_by_role("link", name="New trigger").click()
    body: dict[str, Any] = {
        "name": "Owner changes, not to the treasury",
        "chain_id": 31337,
        "registry": "identity",
        "enabled": True,
        "is_stateful": False,
        "cooldown_seconds": 0,
        "failure_threshold": 10,
        "conditions": {"all": [
            {"condition_type": "owner_changed", "field": "owner", "operator": "!=", "value": "",
             "config": {}},
            {"not": {"condition_type": "field", "field": "to_address", "operator": "=",
                     "value": OWNER, "config": {}}},
        ]},
        "actions": [{"action_type": "slack", "priority": 1, "config": {
            "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
            "text_template": "Agent {{agent_id}} moved from {{old_owner}} to {{new_owner}}"}}],
    }  # fmt: skip
    page.get_by_text("JSON view").click()
    page.get_by_label("The trigger as the API receives it").fill(json.dumps(body))
    page.get_by_role("button", name="Use this JSON").click()
    negated = page.locator("fieldset[data-field='conditions.all[1].not']")
    expect(negated.get_by_label("Field", exact=True)).to_have_value("to_address")
    slack = page.locator("fieldset[data-field='actions[0]']")
    expect(slack.get_by_label("text_template", exact=True)).to_have_value(
        body["actions"][0]["config"]["text_template"]
    )
    page.get_by_role("button", name="Create trigger").click()
    expect(page.get_by_text("The trigger is created.")).to_be_visible()

    trigger_id = page.url.rsplit("/", 1)[1]
    stored = page.request.get(f"{system.url}api/v1/triggers/{trigger_id}").json()

    def without_ids(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: without_ids(value) for key, value in node.items() if key != "id"}
        if isinstance(node, list):
            return [without_ids(item) for item in node]
        return node

    assert without_ids(stored["conditions"]) == body["conditions"]
    assert (
        stored["actions"][0]["config"]["text_template"]
        == body["actions"][0]["config"]["text_template"]
    )


def test_every_trigger_is_listed_past_a_page_of_the_api(page: Page, system: System) -> None:
    """The triggers page and the deliveries filter read the API's pages (200 triggers at
    most each) to the last, in order."""
    sign_up(page, system, "many_triggers")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "erc8004_csrf")
    for number in range(205):
        trigger = {"name": f"trigger {number:03}", "chain_id": 31337, "registry": "reputation",
                   "conditions": [{"condition_type": "agent_id_equals", "field": "agent_id",
                                   "operator": "=", "value": str(number)}],
                   "actions": [{"action_type": "rest", "priority": 1,
                                "config": {"url": "https://hooks.example.com/erc8004"}}]}  # fmt: skip
        response = page.request.post(f"{system.url}api/v1/triggers", data=trigger,
                                     headers={"X-CSRF-Token": csrf})  # fmt: skip
        assert response.ok, response.text()
    page.get_by_role("link", name="Triggers").click()
    rows = page.get_by_role("region", name="Triggers").locator("tbody tr")
    expect(rows).to_have_count(205)
    expect(rows.last).to_contain_text("trigger 204")
    page.get_by_role("link", name="Deliveries", exact=True).click()
    expect(page.get_by_label("Trigger", exact=True).locator("option")).to_have_count(206)
