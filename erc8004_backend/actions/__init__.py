"""Action delivery: the last stage. Workers claim jobs the trigger engine queued, deliver
them (Telegram, signed webhooks, MCP tool calls), retry what may succeed later, dead-letter
what cannot, and record every attempt in `action_results`."""
