"""Where the idea and backtest track finds its human-owned inputs: design goals and the policy.

Why a resource: assets must not read process-wide settings, or a test or a second deployment
with another data folder would design from the wrong goals or decide under the wrong policy.
"""

from pathlib import Path

import dagster as dg

from factory_pipeline.promotion.policy import PromotionPolicy, default_policy_path, load_policy
from factory_pipeline.settings import FactorySettings, default_settings

RESEARCH_RESOURCE_KEY = "research"


class ResearchResource(dg.ConfigurableResource):
    """Design goals folder, promotion policy file, and the symbols the backtests cover."""

    goals_dir: str
    policy_path: str
    symbols: list[str]

    def goals_folder(self) -> Path:
        return Path(self.goals_dir)

    def policy(self) -> PromotionPolicy:
        """The policy, loaded and validated now (a broken file raises ConfigError)."""
        return load_policy(self.policy_path)


def research_resource(settings: FactorySettings | None = None) -> ResearchResource:
    s = settings or default_settings()
    return ResearchResource(
        goals_dir=str(s.goals_dir),
        policy_path=str(default_policy_path(s)),
        symbols=list(s.symbols),
    )
