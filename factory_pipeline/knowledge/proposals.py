"""Module proposal: concept cards -> strategy module specs (ModuleDoc), compiled and validated.

Why: a model (or the offline templates) only proposes modules through a narrow output schema
(:class:`ModuleProposals`, extra fields forbidden, no status field). Code assigns ids, links and
provenance, and :func:`validate_module` decides whether a module is usable. Invalid proposals are
kept with ``status="invalid"`` and ``invalid_reason`` (so the UI shows what an agent got wrong),
and are never used to build systems.

The module logic contract is the one the human-written library obeys
(:mod:`factory_pipeline.strategy.modules`, docs/modules_and_systems.md), so an agent module and a
library module are interchangeable:

- entry: ``long`` and/or ``short`` (bool: enter that side when true);
- exit: ``long`` / ``short`` (bool: exit that side) and/or numeric ``stop_distance`` /
  ``take_profit_distance`` (price units, read at the entry bar);
- filter: ``allow_long`` and/or ``allow_short``, or ``allow`` for both (bool);
- risk: rule fixed_fraction | risk_per_trade | volatility_target | fixed_qty with its parameters,
  optional numeric ``stop_distance`` (and ``volatility`` for volatility_target);
- management: rule breakeven | trailing_stop | time_stop | partial_take_profit with its
  parameters, numeric ``trail_distance`` for trailing_stop.

On top of the library contract, agent modules must give every int/float parameter a ``min`` and a
``max`` (the sweep range).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from factory_pipeline.errors import LLMError
from factory_pipeline.llm.backend import LLMBackend, LLMOutputError
from factory_pipeline.llm.offline import (
    OfflineRequest,
    find_timeframes,
    normalize_whitespace,
    register_offline_task,
    split_sentences,
    timeframe_minutes,
)
from factory_pipeline.llm.prompts import (
    PROPOSAL_PROMPT_VERSION,
    PROPOSAL_SYSTEM_PROMPT,
    render_proposal_prompt,
)
from factory_pipeline.schemas import KbConcept, ModuleDoc, ModuleKind, ParameterSpec, Provenance
from factory_pipeline.strategy import modules as library

PROPOSAL_TASK = "propose_modules"


# LLM output schema ---------------------------------------------------------------------------------

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParameterOut(_Strict):
    name: Identifier
    type: Literal["int", "float", "bool", "enum"]
    default: bool | int | float | str
    min: float | None
    max: float | None
    step: float | None
    choices: list[str] | None
    description: Annotated[str, StringConstraints(max_length=300)]


class LogicOut(_Strict):
    key: Identifier
    expression: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ModuleOut(_Strict):
    """One module as a model states it. ``rule`` is free text here: code checks the closed set,
    so a wrong rule yields an invalid module with a reason instead of a retry."""

    kind: Literal["entry", "exit", "filter", "risk", "management"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    description: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    parameters: list[ParameterOut] = Field(max_length=12)
    logic: list[LogicOut] = Field(max_length=6)
    rule: Annotated[str, StringConstraints(max_length=40)] | None


class ModuleProposals(_Strict):
    modules: list[ModuleOut] = Field(max_length=10)


# Results -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedProposal:
    """A concept for which the backend gave no usable answer."""

    concept_id: str
    reason: str


@dataclass
class ProposalResult:
    modules: list[ModuleDoc] = field(default_factory=list)
    failed: list[FailedProposal] = field(default_factory=list)
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def valid(self) -> list[ModuleDoc]:
        return [m for m in self.modules if m.status == "active"]

    @property
    def invalid(self) -> list[ModuleDoc]:
        return [m for m in self.modules if m.status == "invalid"]


# Public entry points -------------------------------------------------------------------------------


def propose_modules(concepts: Iterable[KbConcept], llm: LLMBackend) -> ProposalResult:
    """Propose, map and validate modules for every concept.

    Modules with identical content (kind, logic, rule, parameters) from different concepts are one
    module whose ``concept_ids`` and provenance list all of them. A concept whose answer is
    unusable (refusal, output that never validated) is listed in ``failed``; other
    :class:`LLMError` s propagate.
    """
    result = ProposalResult()
    by_id: dict[str, ModuleDoc] = {}
    for concept in concepts:
        try:
            answer = llm.complete_structured(
                PROPOSAL_TASK,
                PROPOSAL_PROMPT_VERSION,
                PROPOSAL_SYSTEM_PROMPT,
                render_proposal_prompt(concept),
                ModuleProposals,
                context=concept,
            )
        except LLMOutputError as exc:
            result.failed.append(FailedProposal(concept.id, str(exc)))
            continue
        result.cache_hits += int(answer.cached)
        result.prompt_tokens += answer.prompt_tokens
        result.completion_tokens += answer.completion_tokens
        source = f"{answer.model} {PROPOSAL_PROMPT_VERSION}"
        for proposal in answer.value.modules:
            module = proposal_to_module(proposal, concept, source=source)
            existing = by_id.get(module.id)
            by_id[module.id] = module if existing is None else _link(existing, module)
    result.modules = sorted(by_id.values(), key=lambda m: (m.kind.value, m.name, m.id))
    return result


def proposal_to_module(
    proposal: ModuleOut,
    concept: KbConcept,
    *,
    source: str,
) -> ModuleDoc:
    """Map one proposal to a ModuleDoc (id, links, provenance by code) and validate it."""
    problems: list[str] = []
    parameters: dict[str, ParameterSpec] = {}
    for p in proposal.parameters:
        if p.name in parameters:
            problems.append(f"parameters.{p.name}: declared twice")
            continue
        parameters[p.name] = ParameterSpec(
            type=p.type,
            default=p.default,
            min=p.min,
            max=p.max,
            step=p.step,
            choices=p.choices,
            description=p.description,
        )
    logic: dict[str, str] = {}
    for item in proposal.logic:
        if item.key in logic:
            problems.append(f"logic.{item.key}: given twice")
            continue
        logic[item.key] = item.expression.strip()
    rule = proposal.rule.strip() if proposal.rule and proposal.rule.strip() else None
    kind = ModuleKind(proposal.kind)
    module = ModuleDoc(
        id="module_pending",
        kind=kind,
        name=normalize_whitespace(proposal.name),
        description=normalize_whitespace(proposal.description),
        parameters=parameters,
        logic=logic,
        rule=rule,
        concept_ids=[concept.id],
        provenance=Provenance(
            source=source,
            book_ids=list(concept.provenance.book_ids),
            pages=sorted({e.page for e in concept.evidence} | set(concept.provenance.pages)),
            segment_ids=sorted(
                {e.segment_id for e in concept.evidence} | set(concept.provenance.segment_ids)
            ),
            concept_ids=[concept.id],
        ),
    )
    # content-derived id, layout-independent (the library's content hash of kind, rule,
    # parameter schemas and canonical logic), so the same module from two concepts is one module
    module = module.model_copy(update={"id": "module_" + library.module_content_hash(module)[:16]})
    problems.extend(validate_module(module))
    if problems:
        module = module.model_copy(
            update={"status": "invalid", "invalid_reason": "; ".join(problems)}
        )
    return module


def validate_module(module: ModuleDoc) -> list[str]:
    """Every reason ``module`` violates the contract (empty list: valid): the library's checks
    (:func:`factory_pipeline.strategy.modules.validate_module`: logic keys and types, compilation,
    parameter schemas, rule set, rule parameters and domains, unused parameters) plus the agent
    rule that numeric parameters declare a sweep range."""
    problems = library.validate_module(module)
    for name, spec in module.parameters.items():
        if spec.type in ("int", "float") and (spec.min is None or spec.max is None):
            problems.append(f"parameters.{name}: an agent module must give min and max")
    return problems


# Helpers -------------------------------------------------------------------------------------------


def _link(existing: ModuleDoc, new: ModuleDoc) -> ModuleDoc:
    """The same module proposed for another concept: add its links and provenance."""
    a, b = existing.provenance, new.provenance
    provenance = a.model_copy(
        update={
            "book_ids": sorted(set(a.book_ids) | set(b.book_ids)),
            "pages": sorted(set(a.pages) | set(b.pages)),
            "segment_ids": sorted(set(a.segment_ids) | set(b.segment_ids)),
            "concept_ids": sorted(set(a.concept_ids) | set(b.concept_ids)),
        }
    )
    concept_ids = sorted(set(existing.concept_ids) | set(new.concept_ids))
    return existing.model_copy(update={"concept_ids": concept_ids, "provenance": provenance})


# Offline implementation (templates keyed by concept patterns) -------------------------------------


@register_offline_task(PROPOSAL_TASK)
def offline_propose_modules(request: OfflineRequest) -> ModuleProposals:
    """Deterministic templates: each template looks for its pattern in the concept's sentences
    (evidence quotes and ideas) and takes parameter defaults from the numbers found there; ranges
    are built around the defaults (:func:`_int_param`, :func:`_float_param`)."""
    concept = request.context
    if not isinstance(concept, KbConcept):
        raise LLMError(f"offline task {PROPOSAL_TASK!r} needs a KbConcept context")
    sentences = _concept_sentences(concept)
    modules: list[ModuleOut] = []
    seen: set[str] = set()
    for template in _TEMPLATES:
        for module in template(concept, sentences):
            key = json.dumps(
                module.model_dump(mode="json", exclude={"name", "description"}), sort_keys=True
            )
            if key not in seen:
                seen.add(key)
                modules.append(module)
    return ModuleProposals(modules=modules[:10])


def _concept_sentences(concept: KbConcept) -> list[str]:
    texts = [e.quote for e in concept.evidence]
    texts += (
        concept.entry_ideas
        + concept.exit_ideas
        + concept.risk_constraints
        + concept.setup_conditions
    )
    sentences: list[str] = []
    for text in texts:
        for sentence in split_sentences(text):
            if sentence.normalized not in sentences:
                sentences.append(sentence.normalized)
    return sentences


def _first(sentences: Sequence[str], pattern: str) -> tuple[str, re.Match[str]] | None:
    compiled = re.compile(pattern, re.IGNORECASE)
    for sentence in sentences:
        match = compiled.search(sentence)
        if match:
            return sentence, match
    return None


def _first_of(
    sentences: Sequence[str], patterns: Sequence[str]
) -> tuple[str, re.Match[str]] | None:
    """The first pattern (in priority order) that matches any sentence."""
    for pattern in patterns:
        hit = _first(sentences, pattern)
        if hit is not None:
            return hit
    return None


def _int_param(name: str, default: float, description: str, *, floor: int = 1) -> ParameterOut:
    """Integer parameter on a grid through the default: step ~ default/10, min = default minus
    up to 5 steps (not below ``floor``), max = default plus 10 steps (about 2 x default)."""
    value = max(floor, int(round(default)))
    step = max(1, round(value / 10))
    down = min(5, (value - floor) // step)
    return ParameterOut(
        name=name,
        type="int",
        default=value,
        min=float(value - down * step),
        max=float(value + 10 * step),
        step=float(step),
        choices=None,
        description=description,
    )


def _float_param(
    name: str, default: float, description: str, *, cap: float | None = None
) -> ParameterOut:
    """Float parameter: range [default/2, 2 x default] (capped), step = default/4."""
    high = default * 2 if cap is None else min(default * 2, cap)
    return ParameterOut(
        name=name,
        type="float",
        default=default,
        min=default / 2,
        max=high,
        step=default / 4 if default > 0 else None,
        choices=None,
        description=description,
    )


def _module(
    kind: str,
    name: str,
    description: str,
    params: list[ParameterOut],
    logic: Mapping[str, str],
    rule: str | None = None,
) -> ModuleOut:
    return ModuleOut(
        kind=kind,  # type: ignore[arg-type]
        name=name[:120],
        description=description[:1000],
        parameters=params,
        logic=[LogicOut(key=k, expression=v) for k, v in logic.items()],
        rule=rule,
    )


def _mentions_short(sentences: Sequence[str]) -> bool:
    return any(re.search(r"\b(?:short|sell)\b", s, re.IGNORECASE) for s in sentences)


_NUM = r"(\d+(?:\.\d+)?)"
_TRAIL = re.compile(r"\btrail", re.IGNORECASE)


def _ma_cross(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(
        sentences,
        r"\b(sma|ema|moving[- ]average)s?\b.{0,80}\bcross|\bcross\w*\b.{0,80}\b(sma|ema|moving[- ]average)",
    )
    if hit is None:
        return []
    sentence, _ = hit
    # the first two distinct lengths in the sentence are the crossing pair ("20-period SMA crosses
    # above the 50-period SMA ... above its 200-period SMA" -> 20 and 50)
    found = re.finditer(
        r"(\d+)[- ](?:period|bar|day)|\b(?:sma|ema)\s*\(?(\d+)", sentence, re.IGNORECASE
    )
    lengths = list(dict.fromkeys(float(m.group(1) or m.group(2)) for m in found))
    fast, slow = (min(lengths[:2]), max(lengths[:2])) if len(lengths) >= 2 else (20.0, 50.0)
    ma = "ema" if re.search(r"\bema\b|exponential", sentence, re.IGNORECASE) else "sma"
    params = [
        _int_param("fast", fast, "fast moving average length", floor=2),
        _int_param("slow", slow, "slow moving average length", floor=3),
    ]
    up = f"crosses_above({ma}(close, fast), {ma}(close, slow))"
    down = f"crosses_below({ma}(close, fast), {ma}(close, slow))"
    entry_logic = {"long": up}
    if _mentions_short(sentences):
        entry_logic["short"] = down
    modules = [
        _module(
            "entry",
            f"{concept.name}: {ma.upper()} {int(fast)}/{int(slow)} cross entry",
            sentence,
            params,
            entry_logic,
        )
    ]
    exit_hit = _first(sentences, r"\bexit\b.{0,80}\bcross|\bcross\w*\b.{0,40}\bback\b")
    if exit_hit is not None:
        exit_logic = {"long": down}
        if "short" in entry_logic:
            exit_logic["short"] = up
        modules.append(
            _module(
                "exit",
                f"{concept.name}: {ma.upper()} cross-back exit",
                exit_hit[0],
                params,
                exit_logic,
            )
        )
    return modules


def _htf_filter(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(
        sentences,
        r"\b(?:close|price)\b.{0,40}\b(?:is |stays |remains )?above\b.{0,20}\b(?:its |the )?(\d+)[- ]?(?:period |bar |day )?(sma|ema|moving average)",
    )
    if hit is None:
        return []
    sentence, match = hit
    length = float(match.group(1))
    ma = "ema" if match.group(2).lower() == "ema" else "sma"
    timeframes = find_timeframes(sentence) or concept.timeframes.get("HTF", [])
    params = [_int_param("trend_len", length, "trend moving average length", floor=2)]
    long_expr = f"close > {ma}(close, trend_len)"
    short_expr = f"close < {ma}(close, trend_len)"
    if timeframes:
        htf = max(timeframes, key=timeframe_minutes)
        long_expr, short_expr = f'tf("{htf}", {long_expr})', f'tf("{htf}", {short_expr})'
        label = f"{htf} {ma.upper()} {int(length)} trend filter"
    else:
        label = f"{ma.upper()} {int(length)} trend filter"
    logic = {"allow_long": long_expr}
    if _mentions_short(sentences):
        logic["allow_short"] = short_expr
    return [_module("filter", f"{concept.name}: {label}", sentence, params, logic)]


def _breakout(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    """Channel breakout: entry length from "enter ... highest high of the previous N" / "N-day
    high" / "Donchian N"; exit length from "exit ... lowest low of the last N" / "N-day low"."""
    entry_patterns = (
        r"\b(?:enter|go|buy)\w*\b[^.]{0,80}?\bhighest high of the (?:previous|last|prior) (\d+)",
        r"\b(?:enter|go|buy)\w*\b[^.]{0,80}?\b(\d+)[- ](?:day|bar|period) high",
        r"\bdonchian\b[^.]{0,20}?\b(\d+)",
    )
    exit_patterns = (
        r"\bexit\w*\b[^.]{0,80}?\blowest low of the (?:previous|last|prior) (\d+)",
        r"\bexit\w*\b[^.]{0,80}?\b(\d+)[- ](?:day|bar|period) low",
        r"\bdonchian\b[^.]{0,20}?\b\d+\s*/\s*(\d+)",
    )
    hit = _first_of(sentences, entry_patterns)
    if hit is None:
        return []
    sentence, match = hit
    length = float(match.group(1))
    params = [_int_param("entry_len", length, "breakout lookback (bars)", floor=2)]
    logic = {"long": "close > lag(highest(high, entry_len), 1)"}
    if _mentions_short(sentences):
        logic["short"] = "close < lag(lowest(low, entry_len), 1)"
    modules = [
        _module(
            "entry", f"{concept.name}: {int(length)}-bar breakout entry", sentence, params, logic
        )
    ]
    exit_hit = _first_of(sentences, exit_patterns)
    if exit_hit is not None and float(exit_hit[1].group(1)) != length:
        exit_len = float(exit_hit[1].group(1))
        exit_params = [_int_param("exit_len", exit_len, "exit channel lookback (bars)", floor=2)]
        exit_logic = {"long": "close < lag(lowest(low, exit_len), 1)"}
        if "short" in logic:
            exit_logic["short"] = "close > lag(highest(high, exit_len), 1)"
        modules.append(
            _module(
                "exit",
                f"{concept.name}: {int(exit_len)}-bar channel exit",
                exit_hit[0],
                exit_params,
                exit_logic,
            )
        )
    return modules


def _atr_len(sentence: str) -> float:
    match = re.search(
        r"(\d+)[- ](?:period|bar|day)\s+(?:atr|average true range)", sentence, re.IGNORECASE
    )
    return float(match.group(1)) if match else 14.0


def _atr_stop(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    fixed_stops = [s for s in sentences if not _TRAIL.search(s)]
    hit = _first(
        fixed_stops,
        r"\bstop\b.{0,60}?" + _NUM + r"\s*(?:x\s*|times\s+(?:the\s+)?)?(?:atr|average true range)",
    )
    if hit is None:
        return []
    sentence, match = hit
    mult = float(match.group(1))
    params = [
        _float_param("atr_mult", mult, "stop distance in ATRs"),
        _int_param("atr_len", _atr_len(sentence), "ATR length", floor=2),
    ]
    logic = {"stop_distance": "atr_mult * atr(atr_len)"}
    tp = _first(
        sentences,
        r"(?:target|take[- ]profit)\b.{0,60}?" + _NUM + r"\s*(?:x\s*)?(?:atr|average true range)",
    )
    if tp is not None:
        params.append(
            _float_param("tp_mult", float(tp[1].group(1)), "take-profit distance in ATRs")
        )
        logic["take_profit_distance"] = "tp_mult * atr(atr_len)"
    return [_module("exit", f"{concept.name}: {mult:g} ATR stop", sentence, params, logic)]


def _atr_trailing(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(
        sentences,
        r"\btrail\w*\b.{0,60}?"
        + _NUM
        + r"\s*(?:x\s*|times\s+(?:the\s+)?)?(?:atr|average true range)",
    )
    if hit is None:
        return []
    sentence, match = hit
    params = [
        _float_param("trail_mult", float(match.group(1)), "trailing distance in ATRs"),
        _int_param("atr_len", _atr_len(sentence), "ATR length", floor=2),
    ]
    return [
        _module(
            "management",
            f"{concept.name}: {float(match.group(1)):g} ATR trailing stop",
            sentence,
            params,
            {"trail_distance": "trail_mult * atr(atr_len)"},
            rule="trailing_stop",
        )
    ]


def _rsi(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(
        sentences,
        r"\brsi\b.{0,60}?\b(?:below|under|drops? (?:below|under)|falls? (?:below|under))\s+" + _NUM,
    )
    if hit is None:
        return []
    sentence, match = hit
    length_match = re.search(
        r"(\d+)[- ](?:period|bar|day)\s+rsi|\brsi\s*\((\d+)\)", sentence, re.IGNORECASE
    )
    length = float(next(g for g in length_match.groups() if g)) if length_match else 14.0
    oversold = float(match.group(1))
    params = [
        _int_param("rsi_len", length, "RSI length", floor=2),
        _float_param("oversold", oversold, "RSI oversold level", cap=100.0),
    ]
    logic = {"long": "rsi(close, rsi_len) < oversold"}
    over = _first(sentences, r"\brsi\b.{0,60}?\b(?:above|over|rises? above)\s+" + _NUM)
    if over is not None and _mentions_short(sentences) and float(over[1].group(1)) > oversold:
        params.append(
            _float_param("overbought", float(over[1].group(1)), "RSI overbought level", cap=100.0)
        )
        logic["short"] = "rsi(close, rsi_len) > overbought"
    modules = [
        _module(
            "entry",
            f"{concept.name}: RSI({int(length)}) < {oversold:g} entry",
            sentence,
            params,
            logic,
        )
    ]
    exit_hit = _first(
        sentences, r"\bexit\b.{0,60}?\brsi\b.{0,40}?\b(?:above|crosses above|over)\s+" + _NUM
    )
    if exit_hit is not None:
        exit_params = [
            params[0],
            _float_param("exit_level", float(exit_hit[1].group(1)), "RSI exit level", cap=100.0),
        ]
        modules.append(
            _module(
                "exit",
                f"{concept.name}: RSI exit",
                exit_hit[0],
                exit_params,
                {"long": "rsi(close, rsi_len) > exit_level"},
            )
        )
    return modules


def _bollinger_numbers(sentences: Sequence[str]) -> tuple[float, float]:
    """(length, k) from "Bollinger bands (20 periods, 2 standard deviations)", "20-period
    Bollinger", "2 standard deviations"; template defaults 20 and 2."""
    text = " ".join(sentences)
    length_match = re.search(r"bollinger bands?\s*\((\d+)", text, re.IGNORECASE) or re.search(
        r"(\d+)[- ]period bollinger", text, re.IGNORECASE
    )
    k_match = re.search(_NUM + r"\s+standard deviations?", text, re.IGNORECASE)
    length = float(length_match.group(1)) if length_match else 20.0
    return length, float(k_match.group(1)) if k_match else 2.0


def _bollinger(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    """Bollinger fade: buy a close below the lower band (or, when the text asks for a close
    "back inside", the first close back above it); exit at the middle band when mentioned."""
    hit = _first(sentences, r"\bbollinger\b|\b(?:lower|upper) band\b")
    if hit is None or _first(sentences, r"\bsqueeze\b"):
        return []  # a squeeze breakout, not a fade: see _squeeze
    length, k = _bollinger_numbers(sentences)
    params = [
        _int_param("bb_len", length, "Bollinger length", floor=2),
        _float_param("bb_k", k, "band width in standard deviations"),
    ]
    lower, upper = "bb_lower(close, bb_len, bb_k)", "bb_upper(close, bb_len, bb_k)"
    reentry = _first(sentences, r"\bback inside\b")
    if reentry is not None:
        sentence = reentry[0]
        logic = {"long": f"lag(close, 1) < lag({lower}, 1) and close > {lower}"}
        short = f"lag(close, 1) > lag({upper}, 1) and close < {upper}"
        label = "re-entry"
    else:
        sentence = hit[0]
        logic, short, label = {"long": f"close < {lower}"}, f"close > {upper}", "fade"
    if _mentions_short(sentences):
        logic["short"] = short
    name = f"{concept.name}: Bollinger({int(length)}, {k:g}) {label} entry"
    modules = [_module("entry", name, sentence, params, logic)]
    middle = _first(sentences, r"\bmiddle band\b")
    if middle is not None:
        exit_logic = {"long": "close > bb_middle(close, bb_len, bb_k)"}
        if "short" in logic:
            exit_logic["short"] = "close < bb_middle(close, bb_len, bb_k)"
        name = f"{concept.name}: exit at the middle band"
        modules.append(_module("exit", name, middle[0], params, exit_logic))
    return modules


def _squeeze(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    """Bollinger squeeze breakout: the close leaves the band right after the band width made its
    lowest value of the last ``squeeze_len`` bars ("lowest value of the last 120 bars")."""
    if _first(sentences, r"\bsqueeze\b") is None:
        return []
    hit = _first(sentences, r"\bcloses? above the upper (?:bollinger )?band|\bbollinger\b")
    if hit is None:
        return []
    text = " ".join(sentences)
    length, k = _bollinger_numbers(sentences)
    squeeze_match = re.search(r"lowest value of the last (\d+) bars", text, re.IGNORECASE)
    params = [
        _int_param("bb_len", length, "Bollinger length", floor=2),
        _float_param("bb_k", k, "band width in standard deviations"),
        _int_param(
            "squeeze_len",
            float(squeeze_match.group(1)) if squeeze_match else 100.0,
            "bars over which the band width must be lowest",
            floor=5,
        ),
    ]
    width = "(bb_upper(close, bb_len, bb_k) - bb_lower(close, bb_len, bb_k))"
    squeezed = f"lag({width}, 1) <= lowest({width}, squeeze_len)"
    logic = {"long": f"close > bb_upper(close, bb_len, bb_k) and {squeezed}"}
    if _mentions_short(sentences):
        logic["short"] = f"close < bb_lower(close, bb_len, bb_k) and {squeezed}"
    name = f"{concept.name}: Bollinger({int(length)}) squeeze breakout entry"
    return [_module("entry", name, hit[0], params, logic)]


def _zscore(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(
        sentences,
        r"\bz(?:-?score)?\b.{0,60}?\b(?:below|under|beyond|of)\s+(?:minus\s+|-)?" + _NUM,
    )
    if hit is None:
        return []
    sentence, match = hit
    length_match = re.search(r"(\d+)[- ](?:period|bar|day)", sentence)
    length = float(length_match.group(1)) if length_match else 20.0
    params = [
        _int_param("z_len", length, "z-score lookback", floor=3),
        _float_param("z_entry", float(match.group(1)), "entry z-score magnitude"),
    ]
    logic = {"long": "zscore(close, z_len) < -z_entry"}
    if _mentions_short(sentences):
        logic["short"] = "zscore(close, z_len) > z_entry"
    return [
        _module(
            "entry",
            f"{concept.name}: z-score {float(match.group(1)):g} reversion entry",
            sentence,
            params,
            logic,
        )
    ]


def _time_stop(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(sentences, r"\b(?:after|within)\s+(\d+)\s+(?:bars|candles|days|hours)\b")
    if hit is None or not re.search(r"\b(?:exit|close|time stop)\b", hit[0], re.IGNORECASE):
        return []
    sentence, match = hit
    params = [_int_param("max_bars", float(match.group(1)), "maximum bars in a trade")]
    return [
        _module(
            "management",
            f"{concept.name}: {match.group(1)}-bar time stop",
            sentence,
            params,
            {},
            rule="time_stop",
        )
    ]


def _breakeven(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(sentences, r"\bbreak[- ]?even\b")
    if hit is None:
        return []
    sentence, _ = hit
    r_match = re.search(
        _NUM + r"\s*(?:r\b|times (?:the )?(?:initial )?risk)", sentence, re.IGNORECASE
    )
    trigger = float(r_match.group(1)) if r_match else 1.0
    params = [_float_param("after_r", trigger, "profit in R that moves the stop to entry")]
    return [
        _module(
            "management",
            f"{concept.name}: breakeven at {trigger:g}R",
            sentence,
            params,
            {},
            rule="breakeven",
        )
    ]


def _partial_tp(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(
        sentences,
        r"\b(?:take|book|close)\s+(half|a third|"
        + _NUM
        + r"\s*(?:%|percent))\b.{0,60}?"
        + _NUM
        + r"\s*r\b",
    )
    if hit is None:
        return []
    sentence, match = hit
    part = match.group(1).lower()
    fraction = (
        0.5 if part == "half" else 1 / 3 if part == "a third" else float(match.group(2)) / 100
    )
    params = [
        _float_param("at_r", float(match.group(3)), "profit in R for the partial exit"),
        _float_param("fraction", round(fraction, 4), "share of the position closed", cap=0.99),
    ]
    return [
        _module(
            "management",
            f"{concept.name}: partial take-profit",
            sentence,
            params,
            {},
            rule="partial_take_profit",
        )
    ]


def _risk_sizing(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    """ "Risk N percent (per trade)" -> risk_per_trade; the stop distance comes from an ATR stop
    sentence of the concept, else the template default 2 x ATR(14)."""
    hit = _first(sentences, r"\brisk\w*\b.{0,40}?" + _NUM + r"\s*(?:%|percent)")
    if hit is None:
        return []
    sentence, match = hit
    fraction = float(match.group(1)) / 100
    if not 0 < fraction <= 0.25:
        return []
    fixed_stops = [s for s in sentences if not _TRAIL.search(s)]
    stop = _first(
        fixed_stops, r"\bstop\b.{0,60}?" + _NUM + r"\s*(?:x\s*)?(?:atr|average true range)"
    )
    atr_mult, atr_len = (float(stop[1].group(1)), _atr_len(stop[0])) if stop else (2.0, 14.0)
    params = [
        _float_param("risk_fraction", fraction, "equity fraction lost at the stop", cap=0.25),
        _float_param("atr_mult", atr_mult, "stop distance in ATRs"),
        _int_param("atr_len", atr_len, "ATR length", floor=2),
    ]
    return [
        _module(
            "risk",
            f"{concept.name}: risk {fraction:.2%} per trade",
            sentence,
            params,
            {"stop_distance": "atr_mult * atr(atr_len)"},
            rule="risk_per_trade",
        )
    ]


def _fixed_fraction(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    """ "Allocate / put N percent of equity in each position" -> fixed_fraction."""
    hit = _first(
        sentences,
        r"\b(?:allocate|invest|put|commit|position size of)\b.{0,30}?"
        + _NUM
        + r"\s*(?:%|percent)\s+of\s+(?:the\s+)?(?:equity|capital|account)",
    )
    if hit is None:
        return []
    sentence, match = hit
    fraction = float(match.group(1)) / 100
    if not 0 < fraction <= 1:
        return []
    params = [_float_param("fraction", fraction, "fraction of equity per position", cap=1.0)]
    return [
        _module(
            "risk",
            f"{concept.name}: {fraction:.0%} of equity per position",
            sentence,
            params,
            {},
            rule="fixed_fraction",
        )
    ]


def _vol_target(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    """ "Target (daily|annual) volatility of N percent" -> volatility_target. The volatility
    logic scales the per-bar return stdev by sqrt(bars per target period) (``vol_scale``), the
    period being a day when the text says "daily", else a year; bars are the concept's shortest
    timeframe (1h when it names none). A system on another base timeframe must rescale."""
    hit = _first_of(
        sentences,
        (
            r"\btarget\w*\s+(daily\s+|annual\w*\s+)?volatility\b.{0,60}?"
            + _NUM
            + r"\s*(?:%|percent)",
            r"\bvolatility\b.{0,40}?\btarget\w*\b.{0,40}?()" + _NUM + r"\s*(?:%|percent)",
        ),
    )
    if hit is None:
        return []
    sentence, match = hit
    target = float(match.group(2)) / 100
    if not 0 < target <= 0.5:
        return []
    daily = bool(match.group(1) and match.group(1).strip().lower() == "daily")
    length_match = re.search(r"(\d+)[- ](?:period|bar|day)", sentence)
    timeframes = [tf for role in ("LTF", "MTF", "HTF") for tf in concept.timeframes.get(role, [])]
    timeframes += find_timeframes(sentence)
    bar_minutes = min((timeframe_minutes(tf) for tf in timeframes), default=60)
    period_minutes = 1440 if daily else 365 * 1440
    vol_scale = round(math.sqrt(max(1.0, period_minutes / bar_minutes)), 2)
    params = [
        _float_param("target_vol", target, "volatility target per period", cap=1.0),
        _int_param(
            "vol_len",
            float(length_match.group(1)) if length_match else 20.0,
            "volatility lookback (bars)",
            floor=2,
        ),
        _float_param("vol_scale", vol_scale, "sqrt(bars per target period)"),
    ]
    volatility = "stdev(close / lag(close, 1) - 1, vol_len) * vol_scale"
    period = "daily" if daily else "annual"
    return [
        _module(
            "risk",
            f"{concept.name}: {target:.2%} {period} volatility target",
            sentence,
            params,
            {"volatility": volatility},
            rule="volatility_target",
        )
    ]


def _session(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(sentences, r"\bbetween\s+(\d{1,2}):00\s+and\s+(\d{1,2}):00\s*utc\b")
    if hit is None:
        return []
    sentence, match = hit
    start, end = int(match.group(1)), int(match.group(2))
    if not (0 <= start < end <= 24):
        return []
    params = [
        ParameterOut(
            name="start_hour",
            type="int",
            default=start,
            min=0.0,
            max=23.0,
            step=1.0,
            choices=None,
            description="first UTC hour traded",
        ),
        ParameterOut(
            name="end_hour",
            type="int",
            default=end,
            min=1.0,
            max=24.0,
            step=1.0,
            choices=None,
            description="UTC hour trading stops",
        ),
    ]
    return [
        _module(
            "filter",
            f"{concept.name}: {start:02d}-{end:02d} UTC session",
            sentence,
            params,
            {"allow": "hour >= start_hour and hour < end_hour"},
        )
    ]


def _funding(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(
        sentences,
        r"\bfunding\b.{0,60}?\b(?:above|exceeds?|over|higher than)\s+" + _NUM + r"\s*(%|percent)?",
    )
    if hit is None:
        return []
    sentence, match = hit
    limit = float(match.group(1)) / (100 if match.group(2) else 1)
    if limit <= 0:
        return []
    params = [_float_param("max_funding", limit, "funding rate above which longs are avoided")]
    logic = {"allow_long": "funding_rate <= max_funding"}
    if _mentions_short(sentences):
        logic["allow_short"] = "funding_rate >= -max_funding"
    return [_module("filter", f"{concept.name}: funding filter", sentence, params, logic)]


def _macd(concept: KbConcept, sentences: Sequence[str]) -> list[ModuleOut]:
    hit = _first(sentences, r"\bmacd\b.{0,80}\bcross")
    if hit is None:
        return []
    sentence, _ = hit
    numbers = [float(n) for n in re.findall(r"\b(\d+)\b", sentence)][:3]
    fast, slow, signal = (
        numbers if len(numbers) == 3 and numbers[0] < numbers[1] else (12.0, 26.0, 9.0)
    )
    params = [
        _int_param("macd_fast", fast, "MACD fast length", floor=2),
        _int_param("macd_slow", slow, "MACD slow length", floor=3),
        _int_param("macd_signal_len", signal, "MACD signal length", floor=2),
    ]
    line = "macd_line(close, macd_fast, macd_slow, macd_signal_len)"
    sig = "macd_signal(close, macd_fast, macd_slow, macd_signal_len)"
    logic = {"long": f"crosses_above({line}, {sig})"}
    if _mentions_short(sentences):
        logic["short"] = f"crosses_below({line}, {sig})"
    return [_module("entry", f"{concept.name}: MACD signal cross", sentence, params, logic)]


_TEMPLATES = (
    _ma_cross,
    _htf_filter,
    _breakout,
    _rsi,
    _bollinger,
    _squeeze,
    _zscore,
    _macd,
    _atr_stop,
    _atr_trailing,
    _time_stop,
    _breakeven,
    _partial_tp,
    _risk_sizing,
    _fixed_fraction,
    _vol_target,
    _session,
    _funding,
)
