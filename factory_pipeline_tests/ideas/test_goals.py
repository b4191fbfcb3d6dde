"""Design goals: the shipped goals load; every kind of bad file gives a GoalError naming the
file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory_pipeline.errors import ConfigError
from factory_pipeline.ideas import DesignGoal, GoalError, load_goals
from factory_pipeline.settings import DEFAULT_DATA_DIR

GOOD = """
id: {id}
name: Test goal
symbols: [BTCUSDT]
timeframes: {{H: 4h, M: 1h, L: 15m}}
styles: [trend]
query: trend following
n_candidates: 3
"""


def test_shipped_goals_load_and_ask_for_enough_candidates():
    goals = load_goals(DEFAULT_DATA_DIR / "goals")
    assert len(goals) >= 4
    assert sum(goal.n_candidates for goal in goals) >= 60
    assert len({goal.id for goal in goals}) == len(goals)
    assert all(isinstance(goal, DesignGoal) for goal in goals)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_goal_gets_defaults(tmp_path):
    _write(tmp_path, "a.yaml", GOOD.format(id="goal-a"))
    (goal,) = load_goals(tmp_path)
    assert goal.direction == "both" and goal.max_filters == 2
    assert goal.risk.max_risk_per_trade == 0.01


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (GOOD.format(id="Bad Id"), "id", "slug"),
        (GOOD.format(id="g").replace("styles: [trend]", "styles: [astrology]"), "styles.0", ""),
        (GOOD.format(id="g").replace("H: 4h", "H: 1h"), "(root)", "H > M > L"),
        (GOOD.format(id="g").replace("L: 15m", "L: 7m"), "(root)", "timeframes.L"),
        (GOOD.format(id="g") + "colour: red\n", "colour", "unknown field"),
        (GOOD.format(id="g").replace("query: trend following\n", ""), "query", "required"),
        (GOOD.format(id="g").replace("[BTCUSDT]", "[btc]"), "symbols", "upper-case"),
        (GOOD.format(id="g") + "required_kinds: [entry]\n", "required_kinds", "optional kinds"),
        (GOOD.format(id="g") + "risk: {max_leverage: -1}\n", "risk.max_leverage", "greater than"),
        (
            GOOD.format(id="g") + "required_modules: [x]\nexcluded_modules: [x]\n",
            "(root)",
            "both list",
        ),
    ],
)
def test_each_bad_field_is_named_with_the_file(tmp_path, text, field, message):
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(GoalError) as info:
        load_goals(tmp_path)
    text_of_error = str(info.value)
    assert str(path) in text_of_error
    assert f"{field}:" in text_of_error
    assert message in text_of_error
    assert isinstance(info.value, ConfigError)


def test_unreadable_and_structural_problems(tmp_path):
    with pytest.raises(GoalError, match="does not exist"):
        load_goals(tmp_path / "missing")
    with pytest.raises(GoalError, match="no \\*.yaml"):
        load_goals(tmp_path)
    _write(tmp_path, "a.yaml", "id: [unclosed")
    with pytest.raises(GoalError, match="a.yaml: invalid YAML"):
        load_goals(tmp_path)
    _write(tmp_path, "a.yaml", "- just\n- a list\n")
    with pytest.raises(GoalError, match="a.yaml: a goal must be a mapping"):
        load_goals(tmp_path)


def test_duplicate_ids_name_both_files(tmp_path):
    _write(tmp_path, "a.yaml", GOOD.format(id="same"))
    _write(tmp_path, "b.yaml", GOOD.format(id="same"))
    with pytest.raises(GoalError, match="b.yaml: id: 'same' is already used by a.yaml"):
        load_goals(tmp_path)
