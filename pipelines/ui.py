"""Start the Dagster UI (`dagster dev`) so that it stops cleanly on SIGTERM/SIGINT, even from a script.

A background job inherits SIGINT=ignored and Dagster maps SIGTERM onto that handler, so `dagster dev &` can only be
killed with SIGKILL (which orphans its children). Resetting both handlers before exec fixes that.

    python -m pipelines.ui [--port 3000]   # binds 127.0.0.1
"""

import argparse
import os
import shutil
import signal
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or "dagster"
    os.execv(dagster, [dagster, "dev", "-m", "pipelines.definitions", "-h", args.host, "-p", str(args.port)])


if __name__ == "__main__":
    main()
