"""Whether a build is finished and usable, judged from its unit reports: a build that
looks done but is not (an outage, everything failing, nothing kept) must not exit 0.

Two outcomes stop a build with a structured error the CLI maps to an exit code:
`BuildIncomplete` (some pairs have no result yet: a unit failed, or a backend could not
answer; the same command finishes it) and `BuildUnusable` (the dataset was written, but its
final failures exceed `run.max_failed_fraction`, or it kept nothing). Pure: no Prefect, no Ray.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from editthinker_data.core.reports import BuildResult, GenerateReport

EXIT_INCOMPLETE = 75  # sysexits EX_TEMPFAIL: run the same command again
EXIT_UNUSABLE = 65  # sysexits EX_DATAERR: the data came out wrong; rerunning alone will not help


class BuildError(RuntimeError):
    exit_code = 1
    result: BuildResult | None = None


def _names(part: int) -> str:
    return f"part-{part:05d}"


class BuildIncomplete(BuildError):
    """Some pairs have no result yet; finished units and trajectories are kept (markers and
    journal), so a rerun does only the rest."""

    exit_code = EXIT_INCOMPLETE

    def __init__(
        self, failed: dict[int, str], total: int, incomplete: dict[int, GenerateReport] | None = None
    ):
        self.failed = failed
        self.incomplete = incomplete or {}
        parts = []
        if self.incomplete:
            parts.append(transient_summary(list(self.incomplete.values())))
        if failed:
            lines = "\n".join(f"  {_names(p)}: {why}" for p, why in sorted(failed.items()))
            parts.append(
                f"{len(failed)} of {total} generate units failed; {total - len(failed)} are finished "
                f"and kept:\n{lines}"
            )
        super().__init__(
            "The build is not finished. "
            + "\n".join(parts)
            + "\nNo dataset was written. Run the same command again to finish the rest: it retries "
            "only the unfinished pairs, reusing every cached model answer."
        )


class BuildUnusable(BuildError):
    """The build ran to the end (dataset, manifest, stats written) but should not be used as
    it is: the exception carries the flow's result so the CLI can still show the summary."""

    exit_code = EXIT_UNUSABLE

    def __init__(self, message: str, result: BuildResult):
        super().__init__(message)
        self.result = result


def transient_summary(reports: list[GenerateReport]) -> str:
    """One sentence on pairs left unfinished because a backend could not answer."""
    by_backend: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for r in reports:
        for who, info in r.transient.items():
            by_backend[who] += info.count
            examples.setdefault(who, info.example)
    pairs = sum(r.pairs for r in reports)
    total = sum(by_backend.values())
    causes = "; ".join(f"{who}: {n} (e.g. {examples[who]})" for who, n in by_backend.most_common())
    return (
        f"{total} of {pairs} pairs in {len(reports)} unit(s) could not finish because a backend was "
        f"unreachable, timed out or kept failing: {causes}. The other pairs' trajectories are kept."
    )


def failure_share(generate_reports: list[GenerateReport], limit: float) -> dict[str, Any]:
    """Final failures of the generate stage: pairs that failed at any turn, by reason and by
    backend, against the configured limit (written to stats.json)."""
    pairs = sum(r.stats["input"] for r in generate_reports)
    failed = sum(r.failed_pairs for r in generate_reports)
    by_reason: Counter[str] = Counter()
    by_backend: Counter[str] = Counter()
    for r in generate_reports:
        for f in r.failures:
            by_reason[f["reason"]] += 1
        for who, n in r.backend_failures.items():
            by_backend[who] += n
    return {
        "pairs": pairs,
        "failed": failed,
        "fraction": round(failed / pairs, 4) if pairs else 0.0,
        "limit": limit,
        "by_reason": dict(sorted(by_reason.items())),
        "by_backend": dict(by_backend.most_common()),
    }


def verdict(share: dict[str, Any], totals: dict[str, int]) -> str | None:
    """Why a finished build is unusable, or None when it is fine."""
    steps = totals.get("sft", 0) + totals.get("rl", 0)
    causes = ", ".join(f"{who}: {n}" for who, n in share["by_backend"].items()) or ", ".join(
        f"{reason}: {n}" for reason, n in share["by_reason"].items()
    )
    failed = f"{share['failed']} of {share['pairs']} pairs failed ({causes or 'no failures'})"
    advice = (
        "These failures are final (a rerun replays the same cached answers): see failures.jsonl, fix "
        "the backend (another model, template or prompt is asked anew) and rebuild with --overwrite"
    )
    if steps == 0:
        return f"The build kept nothing: 0 step samples. {failed}. {advice}."
    if share["fraction"] > share["limit"]:
        return (
            f"Too many pairs failed: {failed}, {share['fraction']:.0%} is over run.max_failed_fraction="
            f"{share['limit']:g}. The dataset was written. {advice}, or accept the share by raising "
            f"run.max_failed_fraction (e.g. EDITTHINKER__RUN__MAX_FAILED_FRACTION=0.5)."
        )
    return None
