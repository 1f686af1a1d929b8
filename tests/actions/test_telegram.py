"""Telegram messages: escaping values for each parse mode, the template's own MarkdownV2
text, and the sendMessage body (pure; the Bot API round trip is in test_worker.py)."""

from __future__ import annotations

import html
import re
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.actions.channels import parse_action_config
from erc8004_backend.actions.configs import ActionConfigError
from erc8004_backend.actions.telegram import (
    RETRACTION_PREFIX,
    TelegramConfig,
    escape_for,
    markdown_v2_problem,
    send_message_body,
    template_text,
)
from tests.support.jobs import feedback_event

# https://core.telegram.org/bots/api#markdownv2-style: these must be escaped where meant
# literally, and so must the backslash itself.
MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!\\")

EXAMPLE_1 = TelegramConfig(
    chat_id="123456789",
    parse_mode="MarkdownV2",
    message_template="Agent #{{agent_id}} received a low score: {{score}}\nFrom: {{client_address}}\nTags: {{tag1}}, {{tag2}}\nBlock: {{block_number}}",
)


def unescaped_reserved(text: str) -> list[str]:
    """The MarkdownV2 reserved characters of `text` that no backslash escapes."""
    found = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            position += 2  # an escape and what it escapes
            continue
        if char in MARKDOWN_V2_RESERVED:
            found.append(char)
        position += 1
    return found


def unescape_markdown_v2(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


# -- escaping values ---------------------------------------------------------------------


def test_markdown_v2_escapes_every_reserved_character() -> None:
    escape = escape_for("MarkdownV2")
    assert escape("_*[]()~`>#+-=|{}.!\\") == "".join(f"\\{c}" for c in "_*[]()~`>#+-=|{}.!\\")
    assert escape("score 4.5 (refund)!") == r"score 4\.5 \(refund\)\!"
    assert escape("plain text 42") == "plain text 42"


@given(st.text())
def test_escaped_markdown_v2_has_no_unescaped_reserved_character(text: str) -> None:
    escaped = escape_for("MarkdownV2")(text)
    assert unescaped_reserved(escaped) == []
    assert unescape_markdown_v2(escaped) == text


def test_legacy_markdown_escapes_its_own_few_characters() -> None:
    escape = escape_for("Markdown")
    assert escape("a_b*c`d[e]") == r"a\_b\*c\`d\[e]"
    assert escape("4.5 (ok) #1!") == "4.5 (ok) #1!"  # not special in legacy Markdown


@given(st.text())
def test_legacy_markdown_escaping_round_trips(text: str) -> None:
    escaped = escape_for("Markdown")(text)
    assert re.sub(r"\\([_*`\[])", r"\1", escaped) == text


def test_html_escapes_markup_but_not_quotes() -> None:
    escape = escape_for("HTML")
    assert escape("<b>Tom & \"Jerry\"</b> 'x'") == "&lt;b&gt;Tom &amp; \"Jerry\"&lt;/b&gt; 'x'"
    assert escape("&amp;") == "&amp;amp;"  # an entity in a value shows as written


@given(st.text())
def test_html_escaping_round_trips(text: str) -> None:
    escaped = escape_for("HTML")(text)
    assert "<" not in escaped
    assert ">" not in escaped
    assert html.unescape(escaped) == text


@given(st.text())
def test_no_parse_mode_leaves_values_as_they_are(text: str) -> None:
    assert escape_for(None)(text) == text


# -- the template's own text -------------------------------------------------------------


def test_markdown_v2_templates_get_their_literal_punctuation_escaped() -> None:
    assert template_text("Agent #1: score 4.5 + 1 = 5.5 {ok} - yes!", "MarkdownV2") == (
        r"Agent \#1: score 4\.5 \+ 1 \= 5\.5 \{ok\} \- yes\!"
    )


def test_markdown_v2_markup_stays_the_authors() -> None:
    template = "*bold* _italic_ [link](https://example.com) ~strike~ `code` >quote ||spoiler||"
    assert template_text(template, "MarkdownV2") == (
        r"*bold* _italic_ [link](https://example\.com) ~strike~ `code` >quote ||spoiler||"
    )


def test_markdown_v2_placeholders_stay_untouched() -> None:
    assert template_text("{{agent_id}}.{{ score }}!{{tag1}}", "MarkdownV2") == (
        r"{{agent_id}}\.{{ score }}\!{{tag1}}"
    )
    # Braces around a placeholder are the author's text.
    assert template_text("{{{agent_id}}}", "MarkdownV2") == r"\{{{agent_id}}\}"
    # Filters, their arguments included, are part of the placeholder.
    assert template_text("{{score|fixed:2}}! {{ tag1 | default: n.a. }}.", "MarkdownV2") == (
        r"{{score|fixed:2}}\! {{ tag1 | default: n.a. }}\."
    )


def test_already_escaped_characters_are_not_escaped_twice() -> None:
    assert template_text(r"Score 4\.5\! \#1 4.5", "MarkdownV2") == r"Score 4\.5\! \#1 4\.5"


def test_a_character_after_an_escaped_backslash_is_still_escaped() -> None:
    # The author's "\\" is a literal backslash; the "." after it is literal text too.
    escaped = template_text("dir C:\\\\. done", "MarkdownV2")
    assert escaped == "dir C:\\\\\\. done"
    assert unescaped_reserved(escaped) == []


@pytest.mark.parametrize("parse_mode", [None, "Markdown", "HTML"])
def test_other_parse_modes_keep_the_template_as_written(parse_mode: str | None) -> None:
    template = "Agent #{{agent_id}}: 4.5 {ok}!"
    assert template_text(template, parse_mode) == template


# -- sendMessage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "plain words",
        r"Score \(out of 100\): *42*",
        "*bold* _italic_ __underline__ ~strike~ ||spoiler|| `code (.)` ```\npre (.)\n```",
        r"[a link](https://example\.com/a\)b) and *[bold link](tg://user?id=1)*",
        ">a quote\n>on two lines",
        "**>an expandable quote\n>its last line||",
        r"a \\ backslash, a \* star, a \_ and a \|",
        "*bold _italic in bold_ bold*",
    ],
)
def test_markdown_v2_that_telegram_parses_passes(text: str) -> None:
    assert markdown_v2_problem(text) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "Score (out of 100)",
            "'(' at character 7 is reserved in MarkdownV2: escape it as '\\('"
            " (or write a link, [text](url))",
        ),
        ("a > b", "'>' at character 3 is reserved in MarkdownV2: escape it as '\\>'"),
        ("a | b", "'|' at character 3 is reserved in MarkdownV2: escape it as '\\|'"),
        ("[text] alone", "']' at character 6 is reserved in MarkdownV2"),
        ("snake_case", "the '_' at character 6 is never closed: close it, or escape it as '\\_'"),
        ("*bold* and *more", "the '*' at character 12 is never closed"),
        ("||spoiler", "the '||' at character 1 is never closed"),
        ("`code", "the code opened at character 1 is never closed with `"),
        ("```pre", "the pre block opened at character 1 is never closed with ```"),
        ("[link](https://example.com", "the link's address at character 7 is never closed"),
        ("ends with \\", "the '\\' at character 11 escapes nothing"),
    ],
)
def test_markdown_v2_that_telegram_refuses_is_named(text: str, problem: str) -> None:
    found = markdown_v2_problem(text)
    assert found is not None
    assert found.startswith(problem)


@given(st.text())
def test_any_text_escaped_for_markdown_v2_passes(text: str) -> None:
    assert markdown_v2_problem(escape_for("MarkdownV2")(text)) is None


def test_a_new_markdown_v2_template_telegram_would_refuse_is_refused_where_written() -> None:
    """The API's check (strict: new input), with the position in the template as written:
    the punctuation the template's text gets escaped (#, !) and placeholders count as they
    stand. A stored template is read as before: Telegram says at delivery what it refuses."""
    config = {"chat_id": "1", "parse_mode": "MarkdownV2",
              "message_template": "Agent #{{agent_id}}! Score: {{score}} (out of 100)"}  # fmt: skip
    with pytest.raises(ActionConfigError) as refused:
        parse_action_config("telegram", config, strict=True)
    assert str(refused.value) == (
        "telegram action: message_template: '(' at character 39 is reserved in MarkdownV2:"
        " escape it as '\\(' (or write a link, [text](url))"
    )
    assert config["message_template"][38] == "("
    assert isinstance(parse_action_config("telegram", config), TelegramConfig)  # stored
    fixed = {**config, "message_template": r"Agent #{{agent_id}}! Score: *{{score}}* \(of 100\)"}
    assert isinstance(parse_action_config("telegram", fixed, strict=True), TelegramConfig)
    # Other parse modes are not checked.
    html_mode = {**config, "parse_mode": "HTML"}
    assert isinstance(parse_action_config("telegram", html_mode, strict=True), TelegramConfig)


def test_send_message_body_of_example_1() -> None:
    values = feedback_event(1)

    body = send_message_body(EXAMPLE_1, values)

    assert body == {
        "chat_id": "123456789",
        "parse_mode": "MarkdownV2",
        "text": "Agent \\#42 received a low score: 45\nFrom: 0x"
        + "cc" * 20
        + "\nTags: refund, \nBlock: 1001",
    }


@pytest.mark.parametrize("parse_mode", ["MarkdownV2", "Markdown", "HTML", None])
def test_a_retraction_says_so_before_the_message(
    parse_mode: Literal["MarkdownV2", "Markdown", "HTML"] | None,
) -> None:
    config = TelegramConfig(chat_id="1", message_template="Agent {{agent_id}}: {{score}}",
                            parse_mode=parse_mode, notify_retractions=True)  # fmt: skip
    delivered = send_message_body(config, {**feedback_event(1), "retracted": "false"})
    retracted = send_message_body(config, {**feedback_event(1), "retracted": "true"})

    assert retracted["text"] == RETRACTION_PREFIX + delivered["text"]
    if parse_mode == "MarkdownV2":  # the words need no escaping there either
        assert unescaped_reserved(RETRACTION_PREFIX) == []


def test_send_message_body_escapes_awkward_values() -> None:
    values = feedback_event(1, score="4.5", tag1="re-fund_*[x]*", tag2="a\\b", agent_id="42!")

    body = send_message_body(EXAMPLE_1, values)

    # Nothing in the example's template is markup, so the message has no unescaped reserved
    # character, and Telegram shows it as rendered plainly.
    assert unescaped_reserved(body["text"]) == []
    assert unescape_markdown_v2(body["text"]) == (
        "Agent #42! received a low score: 4.5\nFrom: 0x"
        + "cc" * 20
        + "\nTags: re-fund_*[x]*, a\\b\nBlock: 1001"
    )


def test_send_message_body_formats_then_escapes() -> None:
    """Filtered values are escaped for the parse mode like any value: Telegram shows them as
    formatted, and nothing a filter gives (not even `default`'s text) becomes markup."""
    config = TelegramConfig(
        chat_id="1",
        parse_mode="MarkdownV2",
        message_template="*Agent #{{agent_id}}*: {{score|fixed:2}} from {{client_address|short}}"
        " at {{timestamp|iso}}, tag {{tag2|default:no_tag}}",
    )
    values = feedback_event(1, score="4.5", tag2="")

    body = send_message_body(config, values)

    assert body["text"] == (
        r"*Agent \#42*: 4\.50 from 0xcccc…cccc at 2026\-11\-24T12:00:00Z, tag no\_tag"
    )
    assert unescape_markdown_v2(body["text"]) == (
        "*Agent #42*: 4.50 from 0xcccc…cccc at 2026-11-24T12:00:00Z, tag no_tag"
    )


def test_send_message_body_options() -> None:
    config = TelegramConfig(
        chat_id="-100123",
        message_template="<b>{{agent_id}}</b> {{tag1}}",
        parse_mode="HTML",
        disable_notification=True,
    )
    assert send_message_body(config, {"agent_id": "42", "tag1": "<i>&</i>"}) == {
        "chat_id": "-100123",
        "text": "<b>42</b> &lt;i&gt;&amp;&lt;/i&gt;",
        "parse_mode": "HTML",
        "disable_notification": True,
    }
    plain = TelegramConfig(chat_id="1", message_template="#{{agent_id}}. *{{tag1}}*")
    assert send_message_body(plain, {"agent_id": "42", "tag1": "a_b"}) == {
        "chat_id": "1",
        "text": "#42. *a_b*",
    }
