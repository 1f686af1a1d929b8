"""Everything about talking to EVM chains: JSON-RPC, chain configuration and log decoding."""
