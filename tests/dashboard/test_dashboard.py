"""The dashboard in Chromium: signing up and in, each page, the trigger editor, live
deliveries and events, an agent's page, hostile values rendered as text, and an
accessibility check (axe-core) of every page, with a screenshot of each for the README."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from tests.dashboard.conftest import System, accessibility_problems, screenshot

PASSWORD = "a long password"


def sign_up(page: Page, system: System, username: str) -> None:
    page.goto(system.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("link", name="Sign up").click()
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
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as ada_dash")).to_be_visible()
    expect(page).to_have_url(re.compile(r"#/status$"))
