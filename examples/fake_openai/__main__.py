"""``python -m examples.fake_openai``: serve the fake model on loopback; the first line
on stdout is its base URL (``scripts/serve`` reads it)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from . import FakeModel


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.fake_openai", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument("--api-key", help="refuse calls without this bearer key")
    parser.add_argument(
        "--token-delay", type=float, default=0.05, metavar="SECONDS", help="between streamed words"
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started this one ends (scripts/serve's server)",
    )
    args = parser.parse_args()
    model = FakeModel(args.host, args.port, args.api_key, args.token_delay)
    ready = threading.Event()
    serving = threading.Thread(target=model.serve, args=(ready,), daemon=True)
    serving.start()
    ready.wait()
    print(model.url, flush=True)
    parent = os.getppid()
    try:
        while serving.is_alive():
            if args.exit_with_parent and os.getppid() != parent:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    model.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
