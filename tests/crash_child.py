"""A recording process for tests/test_trust_crash.py, to be killed at a random moment.

``python crash_child.py ROOT RUN_ID SHAPE LOG PAUSE``: 2048 envs that reset every step,
two variations (a scalar and a 3-vector), a ``steps`` table, small buffers and a queue
of two chunks, so the loop often waits for the writer. ``SHAPE`` is ``with`` (a
``with`` block), ``bare`` (no ``with``, no close: the README's Gymnasium shape) or
``raise`` (bare, and an uncaught exception after 20 steps). An optional sixth argument
``gpu`` runs the GPU code on CPU torch (``varirec.arrays.off_host`` forced, as the tests
of the device branches do): tensors in, outcomes accumulated with torch ops and
gathered on the "device" until a hand-over, values sent to it.
After each step the process appends ``<step> <unix time>`` to ``LOG`` (written
unbuffered and fsynced): every hook call of that step returned, so its rows were
handed over.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import varirec as vr

NUM_ENVS = 2048
FLUSH_SECONDS = 1.0
MAX_ROWS = 8192


def main(root: str, run_id: str, shape: str, log: str, pause: float, gpu: bool = False) -> None:
    arrays = np.asarray
    if gpu:
        import torch

        from varirec import arrays as array_world
        from varirec.recording import terms

        array_world.off_host = lambda device: device is not None
        terms.cpu_view = lambda x: None
        arrays = torch.as_tensor
    variations = [
        vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2))),
        vr.Variation("com", vr.VariationCfg(sampler=vr.UniformCfg(low=(0, 0, 0), high=(1, 2, 3)))),
    ]
    manager = vr.RecorderManager(
        NUM_ENVS,
        variations=variations,
        output=root,
        run_id=run_id,
        seed=0,
        step_keys=("reward",),
        max_rows=MAX_ROWS,
        flush_seconds=FLUSH_SECONDS,
        writer_options={"max_queue": 2},
        device="cpu" if gpu else None,
    )
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    ids = arrays(np.arange(NUM_ENVS))
    reward = arrays(np.linspace(0.0, 1.0, NUM_ENVS))
    done = arrays(np.ones(NUM_ENVS, dtype=bool))

    def loop() -> None:
        manager.reset(None, ids)  # episode 0 everywhere
        step = 0
        while True:
            manager.record_step(reward=reward, terminated=done)
            manager.reset(None, ids)
            manager.record_post_step()
            os.write(fd, f"{step} {time.time():.6f}\n".encode())
            os.fsync(fd)
            step += 1
            if shape == "raise" and step == 20:
                raise RuntimeError("simulated crash after 20 steps")
            if pause:
                time.sleep(pause)

    if shape == "with":
        with manager:
            loop()
    else:
        loop()


if __name__ == "__main__":
    # Python keeps SIGINT ignored if it was ignored when it started (a background job of
    # a shell script); the test sends a Ctrl-C, so it needs Python's own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    gpu = len(sys.argv) > 6 and sys.argv[6] == "gpu"
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), gpu)
