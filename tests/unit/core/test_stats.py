"""Model call accounting: per role over its actors, cost from each role's price, a total."""

import pytest

from editthinker_data.config import parse_config
from editthinker_data.core.stats import llm_usage

BASE = {"source": {"manifest": "m.jsonl"}}


def counters(**kw):
    base = {"requests": 0, "retries": 0, "reasks": 0, "failures": 0, "cache_hits": 0,
            "tokens_in": 0, "tokens_out": 0, "rate_wait_s": 0.0}  # fmt: skip
    return {**base, **kw}


def test_usage_per_role_and_total_with_cost():
    remote = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    cfg = parse_config(
        {**BASE, "expert": {**remote, "name": "e", "price": {"input_per_mtok": 2, "output_per_mtok": 8}},
         "scorer": {**remote, "name": "s", "price": {"input_per_mtok": 1}}},
        environ={},
    )  # fmt: skip
    info = [
        {"role": "expert", "name": "e", "counters": counters(requests=3, retries=1, tokens_in=1_000_000, tokens_out=500_000, rate_wait_s=0.25)},
        {"role": "expert", "name": "e", "counters": counters(requests=2, cache_hits=4, tokens_in=1_000_000)},
        {"role": "scorer", "name": "s", "counters": counters(requests=5, failures=1, tokens_in=2_000_000, tokens_out=10)},
        {"role": "editor", "name": "procedural", "counters": counters(requests=99)},
    ]  # fmt: skip
    usage = llm_usage(cfg, info)
    assert set(usage) == {"expert", "scorer", "total"}
    assert usage["expert"]["requests"] == 5 and usage["expert"]["cache_hits"] == 4
    assert usage["expert"]["cost_usd"] == pytest.approx(2 * 2 + 0.5 * 8)
    assert usage["scorer"]["cost_usd"] == pytest.approx(2.0)
    assert usage["total"]["requests"] == 10 and usage["total"]["failures"] == 1
    assert usage["total"]["cost_usd"] == pytest.approx(10.0) and usage["total"]["rate_wait_s"] == 0.25


def test_no_model_roles_no_usage():
    cfg = parse_config(BASE, environ={})
    assert llm_usage(cfg, [{"role": "expert", "name": "procedural", "counters": {}}]) == {}
