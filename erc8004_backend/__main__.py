from erc8004_backend.cli import main

main()
