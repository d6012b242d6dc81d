"""`python -m tests.support.slow_app`: the real server path (`server.serve` under waitress, or the
supervisor with WORKERS > 1) with a fake classifier whose every call takes FAKE_DELAY_S seconds
and whose load takes FAKE_LOAD_S, for overload, hang, drain, departed-client and worker tests;
with OBJECT_DETECTION_ENABLED=true, a micro-batched fake detector as slow per image (FAKE_BOXES:
how many boxes it finds), for departed clients and the memory an annotated answer costs."""
from __future__ import annotations

import os
import sys
import time

from app import create_app, prepare_process
from config import Settings
from serving import workers
from serving.server import serve
from tests.support.fakes import FakeClassifier, ManyBoxDetector


class SlowClassifier(FakeClassifier):
    name = "slow"

    def predict(self, images):
        time.sleep(float(os.environ.get("FAKE_DELAY_S", "1")))
        return super().predict(images)


class SlowDetector(ManyBoxDetector):
    """Micro-batched, as the YOLO detectors are, and as costly per image as a model on a CPU:
    FAKE_DELAY_S for each image of a call."""
    name = "slow_detector"
    batchable = True

    def predict(self, images, min_score):
        time.sleep(float(os.environ.get("FAKE_DELAY_S", "1")) * len(images))
        return super().predict(images, min_score)


def main() -> int:
    prepare_process()
    settings = Settings.from_env()
    if workers.should_supervise(settings):
        return workers.supervise(settings, [sys.executable, "-m", "tests.support.slow_app"])
    classifier = SlowClassifier(load_delay=float(os.environ.get("FAKE_LOAD_S", "0")))
    detector = SlowDetector(int(os.environ.get("FAKE_BOXES", "3")))
    return serve(create_app(settings, classifier=classifier, detector=detector), settings)


if __name__ == "__main__":
    sys.exit(main())
