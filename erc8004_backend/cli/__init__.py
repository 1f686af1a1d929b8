"""The `erc8004` command line (see main.py); one module per command or group."""
