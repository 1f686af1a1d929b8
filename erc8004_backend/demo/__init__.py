"""`erc8004 demo`: the devnet, the whole backend and local delivery targets in one terminal,
with a live view of events, firings and deliveries."""
