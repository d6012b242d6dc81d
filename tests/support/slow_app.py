"""`python -m tests.slow_app`: the real server path (`server.serve` under waitress) with a fake
classifier whose every call takes FAKE_DELAY_S seconds, for overload, hang and drain tests."""
from __future__ import annotations

import os
import sys
import time

from app import create_app, prepare_process
from config import Settings
from serving.server import serve
from tests.support.fakes import FakeClassifier


class SlowClassifier(FakeClassifier):
    name = "slow"

    def predict(self, images):
        time.sleep(float(os.environ.get("FAKE_DELAY_S", "1")))
        return super().predict(images)


def main() -> int:
    prepare_process()
    settings = Settings.from_env()
    return serve(create_app(settings, classifier=SlowClassifier()), settings)


if __name__ == "__main__":
    sys.exit(main())
