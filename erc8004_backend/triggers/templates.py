"""Logic-less message templates: `{{field}}` placeholders, nothing else.

User text is never evaluated: a placeholder is looked up by name and replaced by the value's
text (escaped by the caller's function, for the channel's markup); an unknown name renders
empty and is reported when the trigger is created.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from erc8004_backend.triggers.fields import COMPUTED_FIELDS, FIELDS, LINK_FIELDS, format_value

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
KNOWN_NAMES = frozenset(FIELDS) | COMPUTED_FIELDS | LINK_FIELDS


def placeholders(template: str) -> list[str]:
    """The names a template uses, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(template)))


def unknown_placeholders(template: str) -> list[str]:
    return [name for name in placeholders(template) if name not in KNOWN_NAMES]


def render_template(
    template: str,
    values: Mapping[str, Any],
    escape: Callable[[str], str] = lambda text: text,
) -> str:
    return PLACEHOLDER.sub(lambda match: escape(format_value(values.get(match.group(1)))), template)
