"""What a build will cost, before it starts: edits and GPU-hours per editor, calls, requests,
tokens and cost per model role, and the wall time on the cluster the config asks for.

The call pattern is the rollout's (pipeline/loop.py), counted per trajectory of T turns:
T edits and T scores (or T thinker calls); an expert critique after every turn except a
turn that reaches loop.max_turns, so T calls when the expert stops the trajectory (its
final critique) and T - 1 when the turn limit does. A VIEScore scorer sends two requests a
score, `merged` one, a procedural backend none.

The rates come from a calibration build (`measured_rates`: what N real pairs did) or from
the config's `plan:` priors (`prior_rates`); `estimate` scales them to the pool. Pure: no
Prefect, no Ray, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from editthinker_data.config import BackendSpec, BuildConfig, ConfigError

MODEL_KINDS = ("openai", "transformers")  # kinds that send model requests (tokens, price)


@dataclass
class Rates:
    """Per editor: turns and expert (or thinker) critiques per pair, actor-seconds per edit;
    per role: model requests per call, tokens per request, actor-seconds per call."""

    basis: str
    turns: dict[str, float]
    critiques: dict[str, float]
    edit_seconds: dict[str, float]
    requests_per_call: dict[str, float]
    tokens_in: dict[str, float]
    tokens_out: dict[str, float]
    call_seconds: dict[str, float]
    assumed: list[str] = field(default_factory=list)


@dataclass
class Measured:
    """What a finished (calibration) build did: its pool and trajectories, in counts."""

    pairs: dict[str, int]  # editor -> pooled pairs
    edits: dict[str, int]  # editor -> turns run
    critiques: dict[str, int]  # editor -> expert (or thinker) calls its trajectories made
    usage: dict[str, dict[str, float]]  # stats.json llm_usage: role -> counters
    pools: dict[str, dict[str, float]]  # stats.json scheduler.pools: "role/name" -> load
    turn_seconds: dict[str, float]  # mean edit_s, score_s, refine_s of the trajectory index


def trajectory_calls(num_turns: int, stop_reason: str) -> tuple[int, int]:
    """(edits, critiques) a finished trajectory made: an expert (or thinker) critique after
    every turn but one that hit the turn limit."""
    return num_turns, num_turns - (stop_reason == "max_turns")


def judges(cfg: BuildConfig) -> list[tuple[str, BackendSpec]]:
    """The model roles of a build, (role, spec)."""
    return [(role, spec) for role, spec in cfg.backend_specs() if role != "editor"]


def requests_per_call(role: str, spec: BackendSpec) -> float:
    """Model requests one call of a role sends (before retries and re-asks)."""
    if spec.kind not in MODEL_KINDS:
        return 0.0
    if role == "scorer":
        return 1.0 if spec.params.get("protocol", "viescore") == "merged" else 2.0
    return 1.0


def check_plan(cfg: BuildConfig, calibrating: bool) -> None:
    """Plan settings that contradict the config, or priors missing where no calibration
    will measure them: one error listing every problem and its fix."""
    p = cfg.plan
    problems = []
    editors = {e.name for e in cfg.editors}
    roles = {role for role, _ in judges(cfg)}
    for name in sorted(set(p.editors) - editors):
        problems.append(
            f"plan.editors.{name}: no editor is named {name!r} (editors: {', '.join(sorted(editors))})"
        )
    for name in sorted(set(p.roles) - roles):
        problems.append(
            f"plan.roles.{name}: this build has no {name!r} role; use {' or '.join(sorted(roles))}"
        )
    if p.turns_per_pair is not None and p.turns_per_pair > cfg.loop.max_turns:
        problems.append(
            f"plan.turns_per_pair {p.turns_per_pair:g} exceeds loop.max_turns {cfg.loop.max_turns}; "
            f"a trajectory takes at most {cfg.loop.max_turns} turns"
        )
    if not calibrating:
        if p.turns_per_pair is None:
            problems.append(
                "plan.turns_per_pair is unset: state a prior (mean turns a trajectory takes, 1 to "
                f"loop.max_turns {cfg.loop.max_turns}), or run `plan --calibrate N` to measure it"
            )
        for name in sorted(editors - set(p.editors)):
            problems.append(
                f"plan.editors.{name}.edit_seconds is unset: give the seconds one edit takes on one actor, "
                "or run `plan --calibrate N` to measure it"
            )
        for role, spec in judges(cfg):
            prior = p.roles.get(role)
            if requests_per_call(role, spec) and (prior is None or not prior.input_tokens):
                problems.append(
                    f"plan.roles.{role}.input_tokens is unset for the model {spec.model or spec.name!r}: give "
                    "prompt and completion tokens per request (input_tokens, output_tokens), or run "
                    "`plan --calibrate N` to measure them"
                )
    if problems:
        raise ConfigError("plan: " + "; ".join(problems))


def prior_rates(cfg: BuildConfig) -> Rates:
    """The `plan:` section's priors, every one listed as an assumption."""
    check_plan(cfg, calibrating=False)
    p = cfg.plan
    assert p.turns_per_pair is not None  # check_plan raised otherwise
    turns = float(p.turns_per_pair)
    critique = turns if cfg.thinker else turns - p.max_turns_share
    assumed = [f"turns per pair {turns:g}, {p.max_turns_share:.0%} of trajectories reach the turn limit"]
    rates = Rates("plan: priors in the config", {}, {}, {}, {}, {}, {}, {}, assumed)
    for e in cfg.editors:
        rates.turns[e.name], rates.critiques[e.name] = turns, critique
        rates.edit_seconds[e.name] = p.editors[e.name].edit_seconds
        assumed.append(f"editor {e.name}: {p.editors[e.name].edit_seconds:g} s per edit on one actor")
    for role, spec in judges(cfg):
        prior = p.roles.get(role)
        rpc = requests_per_call(role, spec)
        rates.requests_per_call[role] = rpc
        rates.tokens_in[role] = prior.input_tokens if prior else 0.0
        rates.tokens_out[role] = prior.output_tokens if prior else 0.0
        seconds = prior.request_seconds if prior else 0.0
        concurrency: float = spec.batch_size
        if spec.max_concurrency:
            concurrency = min(concurrency, spec.max_concurrency / spec.num_actors)
        rates.call_seconds[role] = seconds * max(rpc, 1.0) / concurrency
        if prior:
            assumed.append(
                f"{role}: {prior.input_tokens:g} + {prior.output_tokens:g} tokens and {seconds:g} s per request"
            )
    return rates


def measured_rates(cfg: BuildConfig, m: Measured) -> Rates:
    """Rates from a calibration build of the same config: per editor, its turns and
    critiques per pair and the actor-seconds an edit held (the pool's busy time / edits);
    per role, requests per call and tokens per request from its usage."""
    missing = sorted(e.name for e in cfg.editors if not m.pairs.get(e.name))
    if missing:
        raise ConfigError(
            f"the calibration build gave editor(s) {', '.join(missing)} no pairs; calibrate on more pairs "
            f"(at least one per editor share: --calibrate {4 * len(cfg.editors)} or more)"
        )
    n = sum(m.pairs.values())
    rates = Rates(f"calibration: a build of {n} pairs", {}, {}, {}, {}, {}, {}, {})
    for e in cfg.editors:
        pairs = m.pairs[e.name]
        rates.turns[e.name] = m.edits.get(e.name, 0) / pairs
        rates.critiques[e.name] = m.critiques.get(e.name, 0) / pairs
        rates.edit_seconds[e.name] = _seconds(m.pools, f"editor/{e.name}", m.turn_seconds.get("edit_s", 0.0))
    calls = _calls(cfg, sum(m.edits.values()), sum(m.critiques.values()))
    fallback = {"expert": "refine_s", "scorer": "score_s", "thinker": "think_s"}
    for role, spec in judges(cfg):
        used = m.usage.get(role, {})
        requests = used.get("requests", 0.0)
        rates.requests_per_call[role] = requests / calls[role] if calls[role] else 0.0
        rates.tokens_in[role] = used.get("tokens_in", 0.0) / requests if requests else 0.0
        rates.tokens_out[role] = used.get("tokens_out", 0.0) / requests if requests else 0.0
        rates.call_seconds[role] = _seconds(
            m.pools, f"{role}/{spec.name}", m.turn_seconds.get(fallback[role], 0.0)
        )
    return rates


def _seconds(pools: dict[str, dict[str, float]], pool: str, fallback: float) -> float:
    """Actor-seconds per call of a pool: its actors' busy time over the calls they served
    (the scheduler's own account); a rollout's waiting time when the build kept none."""
    load = pools.get(pool, {})
    if load.get("requests") and load.get("busy_s") is not None:
        return load["busy_s"] / load["requests"]
    return fallback


def _calls(cfg: BuildConfig, edits: float, critiques: float) -> dict[str, float]:
    if cfg.thinker:
        return {"thinker": edits}
    return {"expert": critiques, "scorer": edits}


def editor_split(cfg: BuildConfig, pairs: int) -> dict[str, int]:
    """Pairs per editor by ratio, for a stated pool size (largest remainders)."""
    total = sum(e.ratio for e in cfg.editors)
    exact = {e.name: pairs * e.ratio / total for e in cfg.editors}
    out = {name: int(v) for name, v in exact.items()}
    for name in sorted(exact, key=lambda k: out[k] - exact[k])[: pairs - sum(out.values())]:
        out[name] += 1
    return out


def estimate(cfg: BuildConfig, pairs: dict[str, int], rates: Rates) -> dict[str, Any]:
    """The plan for a pool of `pairs` (editor -> pairs): JSON-ready numbers."""
    editors: dict[str, dict[str, float]] = {}
    walls: dict[str, float] = {}
    gpus = service_gpus = 0.0
    for e in cfg.editors:
        n = pairs.get(e.name, 0)
        edits = n * rates.turns[e.name]
        prior = cfg.plan.editors.get(e.name)
        per_actor = prior.gpus if prior and prior.gpus is not None else e.resources.num_gpus
        seconds = rates.edit_seconds[e.name]
        editors[e.name] = {
            "pairs": n,
            "turns_per_pair": round(rates.turns[e.name], 3),
            "edits": round(edits),
            "edit_seconds": round(seconds, 4),
            "actors": e.num_actors,
            "gpus_per_actor": per_actor,
            "gpu_hours": round(edits * seconds * per_actor / 3600, 2),
            "wall_s": round(edits * seconds / e.num_actors, 1),
        }
        walls[f"editor/{e.name}"] = edits * seconds / e.num_actors
        gpus += e.num_actors * e.resources.num_gpus
        service_gpus += e.num_actors * max(per_actor - e.resources.num_gpus, 0.0)
    edits = sum(pairs.get(e.name, 0) * rates.turns[e.name] for e in cfg.editors)
    critiques = sum(pairs.get(e.name, 0) * rates.critiques[e.name] for e in cfg.editors)
    calls = _calls(cfg, edits, critiques)
    roles: dict[str, dict[str, Any]] = {}
    for role, spec in judges(cfg):
        requests = calls[role] * rates.requests_per_call[role]
        t_in, t_out = requests * rates.tokens_in[role], requests * rates.tokens_out[role]
        wall = calls[role] * rates.call_seconds[role] / spec.num_actors
        if spec.requests_per_minute:
            wall = max(wall, requests / spec.requests_per_minute * 60)
        if spec.tokens_per_minute:
            wall = max(wall, (t_in + t_out) / spec.tokens_per_minute * 60)
        walls[f"{role}/{spec.name}"] = wall
        gpus += spec.num_actors * spec.resources.num_gpus
        roles[role] = {
            "name": spec.name,
            "model": spec.model or spec.kind,
            "calls": round(calls[role]),
            "requests": round(requests),
            "tokens_in": round(t_in),
            "tokens_out": round(t_out),
            "cost_usd": round(
                t_in / 1e6 * spec.price.input_per_mtok + t_out / 1e6 * spec.price.output_per_mtok, 2
            ),
            "wall_s": round(wall, 1),
        }
    bottleneck = max(walls, key=walls.__getitem__)
    total_pairs = sum(pairs.values())
    return {
        "basis": rates.basis,
        "assumed": rates.assumed,
        "pairs": total_pairs,
        "max_turns": cfg.loop.max_turns,
        "turns_per_pair": round(edits / total_pairs, 3) if total_pairs else 0.0,
        "editors": editors,
        "roles": roles,
        "total": {
            "edits": round(edits),
            "gpu_hours": round(sum(e["gpu_hours"] for e in editors.values()), 2),
            "requests": sum(r["requests"] for r in roles.values()),
            "tokens_in": sum(r["tokens_in"] for r in roles.values()),
            "tokens_out": sum(r["tokens_out"] for r in roles.values()),
            "cost_usd": round(sum(r["cost_usd"] for r in roles.values()), 2),
        },
        "cluster": {
            "gpus": gpus,
            "service_gpus": service_gpus,
            "actors": {name: a for name, a in _actors(cfg).items()},
            "bottleneck": bottleneck,
            "wall_s": round(walls[bottleneck], 1),
        },
    }


def _actors(cfg: BuildConfig) -> dict[str, int]:
    return {f"{role}/{spec.name}": spec.num_actors for role, spec in cfg.backend_specs()}
