"""How a model scorer asks for scores: the questions (calls) one score needs and how their
answers become a `Scores`, shared by the remote and the local backends.

`viescore` (the default) is VIEScore's tie-task procedure, the one GEdit-Bench and the
EditThinker release's RL reward score with (TIGER-AI-Lab/VIEScore `viescore/__init__.py`):
a semantic-consistency call on (source, edited, instruction) answering
`{"score": [success, over_editing]}` and a perceptual-quality call on the edited image
alone answering `{"score": [naturalness, artifacts]}`; semantic = min of the first pair,
quality = min of the second, overall = sqrt(semantic * quality). The edited image is sent
as RGB at the source's size, as both of those callers resize it. `merged` is our earlier
single question for all four numbers (template `scorer_v1`).

Pure: no model library, no network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editthinker_data.backends import BackendError, ScoreRequest
from editthinker_data.backends.experts.parsing import parse_score_pair, parse_scorer
from editthinker_data.backends.experts.prompting import load_template
from editthinker_data.core.schema import Scores

PROTOCOLS = ("viescore", "merged")
DEFAULT_PROTOCOL = "viescore"
SC_TEMPLATE, PQ_TEMPLATE = "viescore_sc_v1", "viescore_pq_v1"
# The files of VIEScore's `viescore/prompts_raw` folder its tie task joins (with "\n"), read
# from `params.prompt_dir` when a user needs GEdit-Bench's exact prompts.
RAW_CONTEXT = "context_no_delimit.txt"
RAW_SC = ("prompts_0shot/two_image_edit_rule.txt", "prompts_0shot/tie_rule_SC.txt")
RAW_PQ = ("prompts_0shot/rule_PQ.txt",)
SC_NAMES = ("success", "over_editing")
PQ_NAMES = ("naturalness", "artifacts")


@dataclass(frozen=True)
class Call:
    """One model call: `template` is its prompt version (part of the answer cache key);
    `text_first` puts the text before the images in a chat message, as VIEScore's OpenAI
    client does (its local Qwen2.5-VL client, like our transformers backend, puts images first)."""

    kind: str
    template: str
    text: str
    images: list
    parse: Callable[[str], Any]
    text_first: bool = False


class MergedProtocol:
    name = "merged"

    def __init__(self, template: str = "scorer_v1"):
        self.version = template
        self.template = load_template(template)

    def calls(self, r: ScoreRequest) -> list[Call]:
        text = self.template.format(instruction=r.instruction)
        return [Call("merged", self.version, text, [r.source, r.edited], parse_scorer)]

    def combine(self, answers: list[Any]) -> Scores:
        return answers[0]


class ViescoreProtocol:
    name = "viescore"

    def __init__(self, sc: str, pq: str, sc_version: str, pq_version: str, placeholder: str):
        self.sc, self.pq, self.placeholder = sc, pq, placeholder
        self.sc_version, self.pq_version = sc_version, pq_version
        self.version = f"{sc_version}+{pq_version}"

    @classmethod
    def builtin(cls) -> ViescoreProtocol:
        return cls(
            load_template(SC_TEMPLATE), load_template(PQ_TEMPLATE), SC_TEMPLATE, PQ_TEMPLATE, "{instruction}"
        )

    @classmethod
    def from_prompt_dir(cls, prompt_dir: str) -> ViescoreProtocol:
        """VIEScore's own prompt files, joined as its tie task joins them; the version names
        their content, so answers to other wording are never mixed up in the cache."""
        root = Path(prompt_dir).expanduser()
        missing = [n for n in (RAW_CONTEXT, *RAW_SC, *RAW_PQ) if not (root / n).is_file()]
        if missing:
            raise ValueError(
                f"params.prompt_dir {root} lacks {', '.join(missing)}; point it at a copy of VIEScore's "
                f"viescore/prompts_raw folder (TIGER-AI-Lab/VIEScore), which holds these files"
            )
        read = lambda name: (root / name).read_text(encoding="utf-8")  # noqa: E731
        sc = "\n".join(read(n) for n in (RAW_CONTEXT, *RAW_SC))
        pq = "\n".join(read(n) for n in (RAW_CONTEXT, *RAW_PQ))
        if "<instruction>" not in sc:
            raise ValueError(f"params.prompt_dir {root}: {RAW_SC[1]} has no <instruction> placeholder")
        digest = lambda text: hashlib.sha256(text.encode()).hexdigest()[:12]  # noqa: E731
        return cls(sc, pq, f"viescore_sc@{digest(sc)}", f"viescore_pq@{digest(pq)}", "<instruction>")

    def calls(self, r: ScoreRequest) -> list[Call]:
        source = r.source.convert("RGB")
        edited = r.edited.convert("RGB")
        if edited.size != source.size:
            edited = edited.resize(source.size)
        if self.placeholder == "{instruction}":
            sc_text = self.sc.format(instruction=r.instruction)
            pq_text = self.pq.format()
        else:
            sc_text, pq_text = self.sc.replace(self.placeholder, r.instruction), self.pq
        return [
            Call("semantic", self.sc_version, sc_text, [source, edited], _pair(SC_NAMES), True),
            Call("quality", self.pq_version, pq_text, [edited], _pair(PQ_NAMES), True),
        ]

    def combine(self, answers: list[Any]) -> Scores:
        (success, no_over), (natural, no_art) = answers
        details = {
            "success": success,
            "no_over_editing": no_over,
            "naturalness": natural,
            "no_artifacts": no_art,
        }
        return Scores(min(success, no_over), min(natural, no_art), details)


def _pair(names: tuple[str, str]) -> Callable[[str], tuple[float, float]]:
    return lambda text: parse_score_pair(text, names)


def scorer_protocol(
    protocol: str = DEFAULT_PROTOCOL, template: str | None = None, prompt_dir: str | None = None
) -> MergedProtocol | ViescoreProtocol:
    """The protocol a scorer's params ask for; a bad combination fails (at config time) with
    the setting that fixes it."""
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"params.protocol {protocol!r} is unknown; use viescore (VIEScore's two calls, the default) "
            f"or merged (one call for four numbers, template scorer_v1)"
        )
    if protocol == "merged":
        if prompt_dir:
            raise ValueError(
                "params.prompt_dir holds VIEScore's prompt files: it needs params.protocol: viescore"
            )
        return MergedProtocol(template or "scorer_v1")
    if template:
        raise ValueError(
            f"params.template {template!r} is a one-call prompt: set params.protocol: merged to use it; the "
            f"viescore protocol asks with {SC_TEMPLATE} and {PQ_TEMPLATE}, or with VIEScore's own files "
            f"through params.prompt_dir"
        )
    return ViescoreProtocol.from_prompt_dir(prompt_dir) if prompt_dir else ViescoreProtocol.builtin()


def combine_answers(protocol, calls: list[Call], answers: list[Any]) -> Any:
    """One score from its calls' answers; the first failed call fails the score, named, and
    keeps its kind (transient or unusable decides whether a rerun retries the trajectory)."""
    for call, answer in zip(calls, answers, strict=True):
        if isinstance(answer, BackendError):
            return answer if call.kind == "merged" else type(answer)(f"{call.kind} call: {answer}")
    return protocol.combine(answers)


def protocol_version(params: dict[str, Any]) -> str:
    """The prompt version(s) a scorer with these params asks with, recorded in every sample."""
    return scorer_protocol(
        params.get("protocol", DEFAULT_PROTOCOL), params.get("template"), params.get("prompt_dir")
    ).version


class ProtocolScorer:
    """The scorer side both model backends share: `params.protocol` and `params.prompt_dir`
    choose the questions, and the version recorded in every sample. Put it before the
    backend's base class, whose __init__ gets the other params."""

    role = "scorer"

    def __init__(self, *args, protocol: str = DEFAULT_PROTOCOL, prompt_dir: str | None = None, **kwargs):
        self.protocol_name, self.prompt_dir = protocol, prompt_dir
        super().__init__(*args, **kwargs)

    def _load_prompts(self, template: str | None) -> None:
        self.protocol = scorer_protocol(self.protocol_name, template, self.prompt_dir)
        self.template_name = self.protocol.version

    @classmethod
    def template_version(cls, params: dict[str, Any]) -> str:
        return protocol_version(params)
