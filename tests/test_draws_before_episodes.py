"""Crash consistency across tables: an episode row never reaches storage, or becomes
final there, before the draws its episode began with. Otherwise a SIGKILL between the two
leaves a finished episode whose as-of join finds the previous episode's values."""

from __future__ import annotations

import numpy as np

import varirec as vr


def test_the_recorder_hands_over_the_draws_before_the_episodes_that_used_them(tmp_path):
    mass = vr.Variation("mass", vr.VariationCfg(sampler=vr.UniformCfg(low=1, high=2)))
    arrived: list[tuple[str, int]] = []
    with vr.RecorderManager(4, variations=[mass], output=tmp_path, run_id="r", max_rows=4) as m:
        append = m.writer.append

        def spy(table, data):  # the order in which tables reach the writer
            rows = data.num_rows if hasattr(data, "num_rows") else len(data.to_arrow())
            arrived.append((table, rows))
            append(table, data)

        m.writer.append = spy
        m.reset(None, None)  # 4 draws: a full chunk, handed over
        m.record_step(reward=np.ones(4))
        m.reset(None, np.array([0, 1]))  # 2 episodes end; 2 draws wait in the chunk
        m.record_step(reward=np.ones(4))
        m.reset(None, np.array([0, 1]))  # 2 more end: 4 episode rows, handed over
        draws_before = sum(n for t, n in arrived[: [t for t, _ in arrived].index("episodes")]
                           if t == "draws")  # fmt: skip
    # The 4 episodes handed over include env 0 and 1's second ones, drawn in the 2nd reset.
    assert draws_before == 6, arrived
