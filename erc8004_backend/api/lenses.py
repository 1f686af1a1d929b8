"""/me/lenses: the signed-in user's saved reputation lenses, by name.

A lens (erc8004_backend/agents/lenses.py) says how to read an agent's feedback: trusted
clients, one vote per client, recency decay, tags. Saved under a name, it is the user's
own: another user's lens is a 404, as one that does not exist. A definition is checked by
the Lens model before it is written and stored whole, every field present, so that what is
served back is what runs. (A later change of the model that refuses stored definitions
comes with a migration that rewrites them.)
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, status
from psycopg.types.json import Jsonb
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from erc8004_backend.agents.lenses import Lens
from erc8004_backend.api.dependencies import CurrentUser, Db
from erc8004_backend.api.errors import ApiError, error_responses
from erc8004_backend.database.queries import load_queries

QUERIES = load_queries("erc8004_backend.api", "lenses.sql")
router = APIRouter(prefix="/me/lenses", tags=["lenses"])

# As the table's CHECK: a name needs no escaping in a URL path, and is never "." or "..".
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = (
    "1 to 64 letters, digits, '_', '.' and '-', starting with a letter or a digit; case-sensitive"
)
# A user's lenses are listed in one response.
MOST_LENSES = 100

_NAME = re.compile(NAME_PATTERN)


def _lens_name(name: str) -> str:
    # Checked here rather than by `pattern`, whose message would show the regular expression.
    if not _NAME.match(name):
        raise ValueError(f"must be {NAME_RULE}")
    return name


# The pattern is in the schema, for clients and the fuzzer; the validator says the rule.
_IN_SCHEMA: dict[str, Any] = {"pattern": NAME_PATTERN}
LensName = Annotated[
    str, Field(description=NAME_RULE, json_schema_extra=_IN_SCHEMA), AfterValidator(_lens_name)
]
NOT_FOUND = error_responses(404, descriptions={404: "No lens of yours by that name."})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SavedLensIn(_Strict):
    name: LensName
    lens: Lens


class LensReplacement(_Strict):
    lens: Lens = Field(description="The whole definition: fields left out get their defaults.")


class SavedLensOut(BaseModel):
    name: str
    lens: Lens = Field(description="The definition as stored: normalized, every field present.")
    created_at: datetime
    updated_at: datetime


# -- examples shown in the OpenAPI document (each works as written, in order) --------------

AUDITORS = ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"]  # fmt: skip
SAVED_LENS_EXAMPLES = {
    "trusted and recent": {
        "summary": "Clients with a history; each one's latest say; recent feedback counts more",
        "value": {
            "name": "trusted-recent",
            "lens": {"min_feedback": 3, "min_agents": 2, "vote": "latest", "half_life": "30d"},
        },
    },
    "auditors": {
        "summary": "Only the clients I trust, on one tag, ten clients explained",
        "value": {
            "name": "my-auditors",
            "lens": {"allowlist": AUDITORS, "tag1": "quality", "explain_top": 10},
        },
    },
}
REPLACEMENT_EXAMPLES = {
    "one vote each": {
        "summary": "One vote per client (its average), a 90-day half-life",
        "value": {"lens": {"vote": "average", "half_life": "90d"}},
    },
}


def _out(row: dict[str, Any]) -> SavedLensOut:
    return SavedLensOut(
        name=row["name"],
        lens=Lens.model_validate(row["definition"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _stored(lens: Lens) -> Jsonb:
    return Jsonb(lens.model_dump(mode="json"))


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"lens {name!r} not found")


PathName = Annotated[
    str, Path(description=NAME_RULE, json_schema_extra=_IN_SCHEMA), AfterValidator(_lens_name)
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        409,
        descriptions={
            409: f"The name is taken, or the account keeps {MOST_LENSES} lenses already."
        },
    ),
)
async def create_lens(
    body: Annotated[SavedLensIn, Body(openapi_examples=SAVED_LENS_EXAMPLES)],
    user: CurrentUser,
    conn: Db,
) -> SavedLensOut:
    """Save a lens under a name of the user's."""
    values = {"user_id": user.id, "name": body.name, "definition": _stored(body.lens),
              "most": MOST_LENSES}  # fmt: skip
    row = await (await conn.execute(QUERIES["create_lens"], values)).fetchone()
    if row is not None:
        return _out(row)
    taken = await (
        await conn.execute(QUERIES["get_lens"], {"user_id": user.id, "name": body.name})
    ).fetchone()
    if taken is not None:
        message = f"you already have a lens named {body.name!r}"
        raise ApiError(409, f"name: {message}", details=[{"field": "name", "message": message}])
    raise ApiError(
        409, f"you have {MOST_LENSES} saved lenses, the most an account keeps: delete one first"
    )


@router.get("")
async def list_lenses(user: CurrentUser, conn: Db) -> list[SavedLensOut]:
    """The user's saved lenses, by name."""
    cursor = await conn.execute(QUERIES["list_lenses"], {"user_id": user.id})
    return [_out(row) for row in await cursor.fetchall()]


@router.get("/{lens_name}", responses=NOT_FOUND)
async def get_lens(lens_name: PathName, user: CurrentUser, conn: Db) -> SavedLensOut:
    """One saved lens."""
    cursor = await conn.execute(QUERIES["get_lens"], {"user_id": user.id, "name": lens_name})
    row = await cursor.fetchone()
    if row is None:
        raise _not_found(lens_name)
    return _out(row)


@router.put("/{lens_name}", responses=NOT_FOUND)
async def replace_lens(
    lens_name: PathName,
    body: Annotated[LensReplacement, Body(openapi_examples=REPLACEMENT_EXAMPLES)],
    user: CurrentUser,
    conn: Db,
) -> SavedLensOut:
    """Replace a saved lens's definition whole (fields left out get their defaults)."""
    values = {"user_id": user.id, "name": lens_name, "definition": _stored(body.lens)}
    row = await (await conn.execute(QUERIES["replace_lens"], values)).fetchone()
    if row is None:
        raise _not_found(lens_name)
    return _out(row)


@router.delete(
    "/{lens_name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        404, 409, descriptions={404: "No lens of yours by that name.",
                                409: "A trigger's condition names the lens."}
    ),
)  # fmt: skip
async def delete_lens(lens_name: PathName, user: CurrentUser, conn: Db) -> None:
    """Delete a saved lens, unless a trigger's condition names it (config.lens_name)."""
    values = {"user_id": user.id, "name": lens_name}
    users = await (await conn.execute(QUERIES["triggers_using_lens"], values)).fetchall()
    if users:
        named = ", ".join(f"{row['name']!r} ({row['id']})" for row in users[:5])
        more = f" and {len(users) - 5} more" if len(users) > 5 else ""
        # A trigger written at this very moment could still name it: the processor then
        # logs that trigger as not parsing and skips it until the lens exists again.
        raise ApiError(409, f"lens {lens_name!r} is used by your trigger(s) {named}{more}:"
                            " change or delete them first")  # fmt: skip
    cursor = await conn.execute(QUERIES["delete_lens"], values)
    if await cursor.fetchone() is None:
        raise _not_found(lens_name)
