"""The demo's local targets answer like the services they stand in for."""

from __future__ import annotations

import httpx

from erc8004_backend.demo.agent_server import DemoAgentServer
from erc8004_backend.demo.telegram_api import LocalTelegramApi, SentMessage


async def test_the_local_telegram_api_answers_like_the_bot_api() -> None:
    seen: list[SentMessage] = []
    api = LocalTelegramApi("1:abc", on_message=seen.append)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://telegram") as client:  # fmt: skip
        sent = await client.post(
            "/bot1:abc/sendMessage", json={"chat_id": "5", "text": "hi", "parse_mode": "MarkdownV2"}
        )
        wrong_token = await client.post("/bot2:xyz/sendMessage", json={"chat_id": 5, "text": "x"})
        other_method = await client.post("/bot1:abc/sendPhoto", json={"chat_id": 5})
        no_chat = await client.post("/bot1:abc/sendMessage", json={"text": "x"})
        no_text = await client.post("/bot1:abc/sendMessage", json={"chat_id": 5, "text": ""})
    assert sent.status_code == 200
    assert sent.json()["ok"] is True
    assert sent.json()["result"]["message_id"] == 1
    assert [(m.chat_id, m.text, m.parse_mode) for m in seen] == [("5", "hi", "MarkdownV2")]
    assert api.messages == seen
    for answer, status in ((wrong_token, 401), (other_method, 404), (no_chat, 400),
                           (no_text, 400)):  # fmt: skip
        assert answer.status_code == status
        assert answer.json()["ok"] is False
        assert answer.json()["error_code"] == status


async def test_the_demo_agent_refuses_a_request_without_its_token() -> None:
    agent = DemoAgentServer("s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=agent),
                                 base_url="http://agent") as client:  # fmt: skip
        answer = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                   headers={"Authorization": "Bearer wrong"})  # fmt: skip
    assert answer.status_code == 401
    assert agent.rejected == 1
    assert agent.calls == []
