"""Module proposal: offline templates, the logic contract checks, the LLM path, linking."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from factory_pipeline.knowledge.proposals import propose_modules, validate_module
from factory_pipeline.llm import OfflineBackend
from factory_pipeline.llm.openai_backend import OpenAIBackend
from factory_pipeline.llm.prompts import PROPOSAL_PROMPT_VERSION
from factory_pipeline.market.frame import make_frame
from factory_pipeline.schemas import (
    EvidenceQuote,
    KbConcept,
    ModuleDoc,
    ModuleKind,
    ParameterSpec,
    Provenance,
)
from factory_pipeline.strategy.language import EvalContext, compile_expression
from factory_pipeline_tests.fakes.openai_server import (
    FakeOpenAIServer,
    refusal_reply,
    structured_reply,
)

ENTRY = (
    "Enter long when the 20-period SMA crosses above the 50-period SMA on the 1-hour chart while "
    "the 4-hour close is above its 200 SMA."
)
STOP = "Place the stop 2 ATR below entry, using a 14-period ATR."
RISK = "Risk 1 percent of equity per trade."
TRAIL = "Trail the stop at 3 ATR once the trade is in profit."
TIME = "Close the trade after 12 bars if it has not reached the target."

#: The logic contract, written out independently of the code: kind -> key -> expression type.
CONTRACT = {
    "entry": {"long": "bool", "short": "bool"},
    "exit": {"long": "bool", "short": "bool", "stop_distance": "number",
             "take_profit_distance": "number"},
    "filter": {"allow_long": "bool", "allow_short": "bool", "allow": "bool"},
    "risk": {"stop_distance": "number"},
    "management": {"trail_distance": "number"},
}  # fmt: skip


def make_concept(cid: str, quotes: list[str], *, name: str = "Trend Crossover") -> KbConcept:
    return KbConcept(
        id=cid, name=name, description="Trend entries on moving-average crosses.",
        entry_ideas=[q for q in quotes if q.startswith("Enter")],
        evidence=[EvidenceQuote(segment_id=f"seg-{i}", page=10 + i, quote=q) for i, q in enumerate(quotes)],
        provenance=Provenance(book_ids=["book-a"], pages=[10], segment_ids=["seg-0"]),
    )  # fmt: skip


def sma_reference(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for i in range(n - 1, len(x)):
        out[i] = x[i - n + 1 : i + 1].mean()
    return out


def test_offline_templates_take_defaults_from_the_evidence_and_compile():
    concept = make_concept("concept-1", [ENTRY, STOP, RISK, TRAIL, TIME])
    result = propose_modules([concept], OfflineBackend())
    assert result.failed == [] and result.invalid == []
    by_kind: dict[str, list[ModuleDoc]] = {}
    for module in result.modules:
        by_kind.setdefault(module.kind.value, []).append(module)
        assert module.concept_ids == ["concept-1"]
        assert module.provenance.concept_ids == ["concept-1"]
        assert module.provenance.segment_ids == ["seg-0", "seg-1", "seg-2", "seg-3", "seg-4"]
        assert module.provenance.pages == [10, 11, 12, 13, 14]
        for key, expression in module.logic.items():
            compiled = compile_expression(expression, parameters=module.parameters)
            assert compiled.kind == CONTRACT[module.kind.value][key]
        for spec in module.parameters.values():
            if spec.type in ("int", "float"):
                assert spec.min <= spec.default <= spec.max
    (entry,) = by_kind["entry"]
    assert entry.parameters["fast"].default == 20 and entry.parameters["slow"].default == 50
    assert entry.parameters["fast"].min < 20 < entry.parameters["fast"].max
    (trend_filter,) = by_kind["filter"]
    assert trend_filter.parameters["trend_len"].default == 200
    assert '"4h"' in trend_filter.logic["allow_long"]
    (stop,) = [m for m in by_kind["exit"] if "stop_distance" in m.logic]
    assert stop.parameters["atr_mult"].default == 2.0 and stop.parameters["atr_len"].default == 14
    (risk,) = by_kind["risk"]
    assert risk.rule == "risk_per_trade" and risk.parameters["risk_fraction"].default == 0.01
    rules = {m.rule: m for m in by_kind["management"]}
    assert rules["trailing_stop"].parameters["trail_mult"].default == 3.0
    assert rules["time_stop"].parameters["max_bars"].default == 12

    # The entry means what the book says: fast SMA crossing above slow SMA, checked on data.
    rng = np.random.default_rng(5)
    close = 100 + np.cumsum(rng.normal(0, 1, 400))
    times = np.arange(400, dtype=np.int64) * 3_600_000
    frame = make_frame("TEST", "1h", times, close, close + 1, close - 1, close)
    signal = compile_expression(entry.logic["long"], parameters=entry.parameters).evaluate(
        EvalContext(frame), {"fast": 20, "slow": 50}
    )
    fast, slow = sma_reference(close, 20), sma_reference(close, 50)
    expected = np.zeros(400, dtype=bool)
    expected[1:] = (fast[1:] > slow[1:]) & (fast[:-1] <= slow[:-1])
    assert signal.sum() > 0
    np.testing.assert_array_equal(signal, expected)


def test_offline_without_numbers_uses_documented_template_defaults():
    concept = make_concept(
        "c", ["Go long when the fast moving average crosses above the slow one."]
    )
    (entry,) = propose_modules([concept], OfflineBackend()).modules
    assert (entry.parameters["fast"].default, entry.parameters["slow"].default) == (20, 50)


def module(kind: str, logic: dict[str, str], params: dict[str, ParameterSpec] | None = None,
           rule: str | None = None) -> ModuleDoc:  # fmt: skip
    return ModuleDoc(
        id="m_test", kind=ModuleKind(kind), name="m", description="d", logic=logic,
        parameters=params or {}, rule=rule,
    )  # fmt: skip


INT20 = ParameterSpec(type="int", default=20, min=10, max=40, step=1)


# The library validator (strategy.modules) owns the contract; these check that proposals go
# through it (reasons name the field) and that the agent-only rule (min and max) is added.
@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (module("entry", {"enter": "close > open"}), "logic.enter"),
        (module("entry", {"long": "sma(close, 20)"}), "logic.long"),
        (module("entry", {"long": "close > sma(close, n)"}), "logic.long"),
        (module("entry", {"long": "__import__('os')"}), "logic.long"),
        (module("risk", {}, rule="martingale"), "rule"),
        (module("risk", {}, rule="fixed_fraction"), "parameters.fraction"),
        (module("entry", {"long": "close > sma(close, n)"},
                {"n": ParameterSpec(type="int", default=50, min=10, max=40)}), "parameters.n"),
        (module("entry", {"long": "close > sma(close, n)"},
                {"n": ParameterSpec(type="int", default=20)}), "parameters.n"),
    ],
)  # fmt: skip
def test_contract_violations_name_the_field(doc, field):
    problems = validate_module(doc)
    assert any(p.startswith(field) for p in problems), problems


def test_agent_modules_need_a_sweep_range():
    unbounded = module(
        "entry", {"long": "close > sma(close, n)"}, {"n": ParameterSpec(type="int", default=20)}
    )
    assert validate_module(unbounded) == ["parameters.n: an agent module must give min and max"]


def test_contract_accepts_every_kind():
    fraction = {"fraction": ParameterSpec(type="float", default=0.1, min=0.05, max=0.2)}
    after = {"after_r": ParameterSpec(type="float", default=1.0, min=0.5, max=2.0)}
    valid = [
        module("entry", {"long": "crosses_above(sma(close, n), sma(close, 50))"}, {"n": INT20}),
        module("exit", {"short": "close > open", "take_profit_distance": "3 * atr(14)"}),
        module("filter", {"allow_long": 'tf("4h", close > sma(close, 200))'}),
        module("risk", {"stop_distance": "2 * atr(14)"}, fraction, "fixed_fraction"),
        module("management", {}, after, "breakeven"),
    ]
    assert [validate_module(m) for m in valid] == [[]] * len(valid)


# LLM path ---------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def backend(server: FakeOpenAIServer) -> Iterator[OpenAIBackend]:
    llm = OpenAIBackend(base_url=server.base_url, api_key="k", model="fake-model",
                        max_retries=0, max_validation_attempts=1)  # fmt: skip
    yield llm
    llm.close()


def param(name: str, default: float, lo: float, hi: float, kind: str = "int") -> dict:
    return {"name": name, "type": kind, "default": default, "min": lo, "max": hi, "step": None,
            "choices": None, "description": ""}  # fmt: skip


def proposal(kind: str, name: str, logic: dict[str, str], params: list[dict] | None = None,
             rule: str | None = None) -> dict:  # fmt: skip
    return {
        "kind": kind, "name": name, "description": f"{name}.", "parameters": params or [],
        "logic": [{"key": k, "expression": v} for k, v in logic.items()], "rule": rule,
    }  # fmt: skip


def test_llm_proposals_are_validated_and_invalid_ones_kept_with_reasons(server, backend):
    concept = make_concept("concept-9", [ENTRY])
    server.script(
        structured_reply(
            {
                "modules": [
                    proposal("entry", "good cross", {"long": "crosses_above(sma(close, fast), sma(close, 50))"},
                             [param("fast", 20, 10, 40)]),
                    proposal("entry", "undeclared", {"long": "close > sma(close, slow)"}),
                    proposal("entry", "wrong key", {"buy": "close > open"}),
                    proposal("risk", "odd rule", {}, rule="all_in"),
                    proposal("entry", "bad default", {"long": "close > sma(close, n)"},
                             [param("n", 500, 10, 40)]),
                ]
            }
        )
    )  # fmt: skip
    result = propose_modules([concept], backend)
    by_name = {m.name: m for m in result.modules}
    assert by_name["good cross"].status == "active" and by_name["good cross"].invalid_reason == ""
    assert by_name["good cross"].provenance.source == f"fake-model {PROPOSAL_PROMPT_VERSION}"
    assert {m.name for m in result.invalid} == {
        "undeclared",
        "wrong key",
        "odd rule",
        "bad default",
    }
    assert "logic.long: unknown name 'slow'" in by_name["undeclared"].invalid_reason
    assert by_name["wrong key"].invalid_reason.startswith("logic.buy: ")
    assert by_name["odd rule"].invalid_reason.startswith("rule: 'all_in'")
    assert by_name["bad default"].invalid_reason.startswith("parameters.n.default: 500")
    assert all(m.concept_ids == ["concept-9"] for m in result.modules)
    (request,) = server.chat_requests()
    assert '<concept_card id="concept-9">' in request.messages[1]["content"]


def test_same_module_from_two_concepts_is_one_module_linked_to_both():
    first = make_concept("concept-a", [ENTRY], name="Crossover A")
    second = make_concept("concept-b", [ENTRY], name="Crossover B")
    result = propose_modules([first, second], OfflineBackend())
    entries = [m for m in result.modules if m.kind is ModuleKind.ENTRY]
    assert len(entries) == 1
    assert entries[0].concept_ids == ["concept-a", "concept-b"]
    assert entries[0].provenance.concept_ids == ["concept-a", "concept-b"]


def test_unusable_answer_is_recorded_per_concept(server, backend):
    server.script(refusal_reply("no"), structured_reply({"modules": []}))
    result = propose_modules([make_concept("c1", [ENTRY]), make_concept("c2", [STOP])], backend)
    assert [f.concept_id for f in result.failed] == ["c1"] and result.modules == []
    assert "refused" in result.failed[0].reason


@pytest.mark.parametrize(
    ("quote", "kind", "rule", "expected_defaults"),
    [
        ("Enter long when the daily close exceeds the highest high of the previous 55 days.",
         "entry", None, {"entry_len": 55}),
        ("Exit a long when price closes below the lowest low of the last 20 days, after you enter "
         "long on a 55-day high.", "exit", None, {"exit_len": 20}),
        ("Enter long when z falls below minus 2.5 on the 30-period z-score.", "entry", None,
         {"z_len": 30, "z_entry": 2.5}),
        ("Wait until a bar closes below the lower band of the Bollinger bands (30, 2.5 standard "
         "deviations) and the next bar closes back inside it.", "entry", None,
         {"bb_len": 30, "bb_k": 2.5}),
        ("Enter long when, after a squeeze, the close is above the upper Bollinger band and the "
         "bandwidth was at its lowest value of the last 90 bars.", "entry", None,
         {"squeeze_len": 90}),
        ("Only trade between 13:00 and 17:00 UTC.", "filter", None,
         {"start_hour": 13, "end_hour": 17}),
        ("Avoid longs when funding is above 0.05 percent.", "filter", None, {"max_funding": 0.0005}),
        ("Move the stop to breakeven once the trade is 1.5R in profit.", "management", "breakeven",
         {"after_r": 1.5}),
        ("Take half of the position off at 2R.", "management", "partial_take_profit",
         {"fraction": 0.5, "at_r": 2.0}),
        ("Scale each position to a volatility target of 20 percent using a 30-day estimate.",
         "risk", "volatility_target", {"target_vol": 0.2, "vol_len": 30, "vol_scale": 93.59}),
        ("Pick a target daily volatility for each position, for example 0.5 percent, on the "
         "15-minute chart.", "risk", "volatility_target",
         {"target_vol": 0.005, "vol_scale": 9.8}),
        ("Allocate 10 percent of equity to each position.", "risk", "fixed_fraction",
         {"fraction": 0.1}),
        ("The MACD line crossing above its signal line (12, 26, 9) starts a long.", "entry", None,
         {"macd_fast": 12, "macd_slow": 26, "macd_signal_len": 9}),
    ],
)  # fmt: skip
def test_offline_templates_read_their_numbers(quote, kind, rule, expected_defaults):
    result = propose_modules([make_concept("c", [quote])], OfflineBackend())
    matching = [m for m in result.modules if m.kind.value == kind and m.rule == rule]
    assert len(matching) == 1, [m.name for m in result.modules]
    (found,) = matching
    assert found.status == "active", found.invalid_reason
    assert {k: found.parameters[k].default for k in expected_defaults} == pytest.approx(
        expected_defaults
    )


def test_proposal_prompt_names_every_rule_parameter_and_function_signature():
    """The system prompt is hand-written; this keeps it in step with the contract it teaches."""
    from factory_pipeline.llm.prompts import PROPOSAL_SYSTEM_PROMPT
    from factory_pipeline.strategy.language import KNOWN_FUNCTIONS, SERIES
    from factory_pipeline.strategy.modules import LOGIC_KEYS, RULES

    text = " ".join(PROPOSAL_SYSTEM_PROMPT.split())
    for name, rule in RULES.items():
        assert name in text
        for word in (*rule.required, *rule.required_logic):
            assert word in text, (name, word)
    for keys in LOGIC_KEYS.values():
        assert all(f'"{key}"' in text for key in keys)
    for spec in KNOWN_FUNCTIONS.values():
        assert spec.signature in text, spec.signature
    assert all(series in text for series in SERIES)
