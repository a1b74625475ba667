"""``python -m tether.examples.titanium``: run a worker for the Titanium app."""

from __future__ import annotations

import logging
import os

from tether.examples.titanium import app

if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("TETHER_LOG_LEVEL", "WARNING"))
    app.run_worker(concurrency=int(os.environ.get("TETHER_CONCURRENCY") or 100))
