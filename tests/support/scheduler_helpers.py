"""Pairs, configs and a one-call rollout run shared by the scheduler's test files."""

from editthinker_data.backends.procedural.scene import render_scene
from editthinker_data.config import parse_config
from editthinker_data.core.schema import SourcePair
from editthinker_data.distributed.drive import run_rollouts
from editthinker_data.pipeline.loop import Names, rollout


def pairs(n):
    img = render_scene("sky", [("circle", "red", 0.3, 0.5, 0.12), ("square", "green", 0.7, 0.5, 0.1)], 48)
    return [
        SourcePair(f"p{i}", "Turn the scarlet ball cobalt.", img, "other", "sha", editor="e")
        for i in range(n)
    ]


def config(expert_latency):
    return parse_config(
        {
            "source": {"manifest": "unused.jsonl"},
            "editors": [{"name": "e", "params": {"skill": 0.3}, "batch_size": 4}],
            "expert": {
                "name": "x",
                "params": {"latency_s": expert_latency, "false_alarm_rate": 0.0},
                "batch_size": 8,
            },
            "scorer": {"name": "s", "batch_size": 8},
        },
        environ={},
    )


def one_editor(params, batch_size=2):
    """One editor "e" with `params`; the expert and scorer on their defaults."""
    return parse_config(
        {
            "source": {"manifest": "unused.jsonl"},
            "editors": [{"name": "e", "params": params, "batch_size": batch_size}],
            "expert": {"name": "x"},
            "scorer": {"name": "s"},
        },
        environ={},
    )


def run(cfg, workers, items, retries=2, on_usage=None):
    done = {}
    names = Names(cfg.expert.name, cfg.scorer.name)
    counters = run_rollouts(
        workers,
        items,
        lambda p: rollout(p, names, max_turns=3, seed=0),
        lambda i, t: done.__setitem__(i, t),
        max_in_flight=16,
        retries=retries,
        on_usage=on_usage,
    )
    return done, counters
