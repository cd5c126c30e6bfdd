"""RSS of the live loop at the code before issue 13 (02183ec), which has no soak script.

Grabber + run_live as `edgeclf run`, resnet8_int8, synthetic 160x120 frames handed over as the model
takes them (as benchmarks/soak.py does), JSON lines to /dev/null, no --collect (unbounded there); RSS
sampled every 10 s. Usage: git worktree add /tmp/old13 02183ec && cd /tmp/old13 && python before_soak.py N
"""

import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.getcwd())
import edge_app  # noqa: E402 - from the worktree in the current directory, not an installed edgeclf
from edge_app.capture import Grabber  # noqa: E402
from edge_app.classifier import Classifier  # noqa: E402
from edge_app.live import LiveOptions, run_live  # noqa: E402
from edge_app.sources import Frame  # noqa: E402

TAKEN = threading.Event()
SCENES = [np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8) for _ in range(8)]


class Paced(Frame):
    @property
    def for_model(self) -> np.ndarray:
        TAKEN.set()
        return self.image


class Synthetic:
    name, live = "synthetic", True

    def __init__(self) -> None:
        self.index = 0

    def open(self) -> None:
        TAKEN.set()

    def close(self) -> None:
        pass

    def read(self) -> Frame:
        TAKEN.wait(0.05)
        TAKEN.clear()
        self.index += 1
        return Paced(SCENES[self.index % len(SCENES)], self.index, self.name)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS"))


def main() -> None:
    assert edge_app.__file__.startswith(os.getcwd()), edge_app.__file__
    samples, done, start = [], threading.Event(), time.monotonic()

    def sample() -> None:
        while not done.wait(10):
            samples.append((round(time.monotonic() - start), round(rss_mb(), 2)))

    threading.Thread(target=sample, daemon=True).start()
    clf = Classifier("models/resnet8_int8.tflite")
    grabber = Grabber(Synthetic()).start()
    with open(os.devnull, "w") as out:
        summary = run_live(clf, grabber, LiveOptions(max_frames=int(sys.argv[1]), smooth=5, threshold=0.9), out=out)
    done.set()
    print(summary.line())
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
