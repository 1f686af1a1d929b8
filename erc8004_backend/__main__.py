"""`python -m erc8004_backend`, and the `erc8004` script: the command line, which takes a
moment to load (its command's modules only); Ctrl-C meanwhile ends it quietly, as it does
once it runs."""

import gc
import signal
import sys


def main() -> None:
    gc.disable()  # while the command line loads: cli/loading.py
    try:
        from erc8004_backend.cli.main import main as run_command_line
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # another Ctrl-C: no traceback either
        sys.exit(130)
    run_command_line()


if __name__ == "__main__":
    main()
