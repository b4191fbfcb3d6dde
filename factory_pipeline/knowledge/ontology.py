"""The trading ontology as data: topics, their terms and the weight each term carries.

Why data and not code: segments, concept cards and modules are tagged with these topic ids, and
retrieval filters by them, so the vocabulary must be explicit, reviewable and versioned in one
place. :mod:`factory_pipeline.knowledge.tagging` compiles the terms into word-boundary regexes;
docs/ontology.md describes the matching rule and lists the topics.

Term syntax (see :func:`factory_pipeline.knowledge.tagging.term_pattern`):

- Words are matched case-insensitively on word boundaries. Words in a multi-word term may be
  separated by spaces or hyphens ("trend following" also matches "trend-following").
- Each word also matches its plural ("stop" matches "stops"); a trailing ``*`` matches any
  ending ("revenge trad*" matches "revenge trading", "revenge trader").
- A term starting with ``re:`` is a raw regular expression (for numeric forms like "4-hour").

Weights: 1.0 for a term that on its own says the text is about the topic ("mean reversion"),
0.5 for a strong hint that needs company ("oversold"), 0.25-0.35 for common words that only
count when repeated or combined ("stop", "volume").
"""

from __future__ import annotations

from dataclasses import dataclass

#: A topic is assigned when its score reaches this value (see tagging.score_text).
MIN_TOPIC_SCORE = 1.0
#: Repeated mentions of one term count at most this many times.
MAX_TERM_COUNT = 3
#: Version of the ontology data; bump when topics or terms change (tags are derived data).
ONTOLOGY_VERSION = 1


@dataclass(frozen=True)
class Topic:
    """One topic of the ontology: a stable id, a label, a description and weighted terms."""

    id: str
    label: str
    description: str
    terms: tuple[tuple[str, float], ...]


ONTOLOGY: tuple[Topic, ...] = (
    Topic(
        id="trend_following",
        label="Trend following",
        description="Trading in the direction of a persistent move: crossovers, trend filters.",
        terms=(
            ("trend following", 1.0),
            ("trend follower", 1.0),
            ("trend trade", 1.0),
            ("trend filter", 1.0),
            ("with the trend", 1.0),
            ("moving average crossover", 1.0),
            ("golden cross", 1.0),
            ("death cross", 1.0),
            ("uptrend", 0.5),
            ("downtrend", 0.5),
            ("trending", 0.5),
            ("crossover", 0.5),
            ("crosses above", 0.35),
            ("crosses below", 0.35),
            ("trend", 0.35),
        ),
    ),
    Topic(
        id="mean_reversion",
        label="Mean reversion",
        description="Fading stretched prices back toward an average: oscillator extremes, z-scores.",
        terms=(
            ("mean reversion", 1.0),
            ("mean reverting", 1.0),
            ("revert* to the mean", 1.0),
            ("reversion", 0.75),
            ("z-score", 0.75),
            ("zscore", 0.75),
            ("oversold", 0.5),
            ("overbought", 0.5),
            ("fade", 0.5),
            ("fading", 0.5),
            ("snap back", 0.5),
            ("stretched", 0.35),
            ("middle band", 0.35),
        ),
    ),
    Topic(
        id="breakout",
        label="Breakout",
        description="Entering when price leaves a channel, range or consolidation.",
        terms=(
            ("breakout", 1.0),
            ("break out", 0.75),
            ("donchian", 1.0),
            ("channel breakout", 1.0),
            ("squeeze", 0.5),
            ("false breakout", 0.5),
            ("new high", 0.5),
            ("new low", 0.5),
            ("re:\\b\\d+[- ](?:bar|day|period)s? (?:high|low)s?\\b", 0.5),
        ),
    ),
    Topic(
        id="support_resistance",
        label="Support and resistance",
        description="Price levels where buying or selling has appeared before.",
        terms=(
            ("support and resistance", 1.0),
            ("support level", 1.0),
            ("resistance level", 1.0),
            ("key level", 0.75),
            ("range low", 0.5),
            ("range high", 0.5),
            ("resistance", 0.5),
            ("support", 0.35),
            ("swing high", 0.35),
            ("swing low", 0.35),
            ("pivot", 0.35),
            ("round number", 0.5),
        ),
    ),
    Topic(
        id="order_blocks",
        label="Order blocks and liquidity",
        description="Smart-money concepts: order blocks, fair value gaps, liquidity sweeps.",
        terms=(
            ("order block", 1.0),
            ("fair value gap", 1.0),
            ("liquidity sweep", 1.0),
            ("stop hunt", 1.0),
            ("smart money", 0.75),
            ("imbalance", 0.5),
            ("mitigation", 0.5),
            ("liquidity pool", 0.75),
        ),
    ),
    Topic(
        id="volume_order_flow",
        label="Volume and order flow",
        description="Traded volume, delta, VWAP, volume profile and order-flow reading.",
        terms=(
            ("order flow", 1.0),
            ("volume profile", 1.0),
            ("cumulative volume delta", 1.0),
            ("vwap", 1.0),
            ("footprint", 0.75),
            ("absorption", 0.5),
            ("average volume", 0.5),
            ("volume", 0.35),
            ("taker buy*", 0.5),
        ),
    ),
    Topic(
        id="volatility",
        label="Volatility",
        description="How much price moves: ATR, standard deviation, bands, squeezes, regimes.",
        terms=(
            ("volatility", 0.75),
            ("average true range", 1.0),
            ("atr", 0.5),
            ("bollinger", 0.75),
            ("keltner", 0.75),
            ("standard deviation", 0.5),
            ("bandwidth", 0.5),
            ("squeeze", 0.5),
            ("realized vol*", 0.75),
            ("range expansion", 0.75),
            ("contraction", 0.35),
        ),
    ),
    Topic(
        id="risk_management",
        label="Risk management",
        description="Limiting losses: risk per trade, loss limits, drawdown rules, leverage caps.",
        terms=(
            ("risk management", 1.0),
            ("risk of ruin", 1.0),
            ("daily loss", 1.0),
            ("loss limit", 1.0),
            ("kill switch", 1.0),
            ("max drawdown", 1.0),
            ("maximum drawdown", 1.0),
            ("portfolio heat", 1.0),
            ("risk per trade", 1.0),
            ("drawdown", 0.5),
            ("losing streak", 0.5),
            ("leverage", 0.35),
            ("liquidation", 0.35),
            ("exposure", 0.35),
            ("risk", 0.25),
        ),
    ),
    Topic(
        id="position_sizing",
        label="Position sizing",
        description="How much to trade: fixed fractional, volatility targeting, pyramiding.",
        terms=(
            ("position size", 1.0),
            ("position sizing", 1.0),
            ("fixed fractional", 1.0),
            ("volatility target*", 1.0),
            ("kelly", 0.75),
            ("pyramid*", 0.75),
            ("scale in", 0.5),
            ("add* to winner", 0.75),
            ("units", 0.25),
            ("of equity", 0.5),
            ("notional", 0.35),
            ("lot size", 0.5),
            ("size", 0.25),
        ),
    ),
    Topic(
        id="psychology",
        label="Trading psychology",
        description="Discipline, emotions and biases that make traders break their rules.",
        terms=(
            ("psychology", 1.0),
            ("discipline", 0.75),
            ("revenge trad*", 1.0),
            ("fomo", 1.0),
            ("fear of missing out", 1.0),
            ("tilt", 0.5),
            ("emotion*", 0.5),
            ("fear", 0.35),
            ("greed", 0.5),
            ("overconfiden*", 0.5),
            ("patience", 0.35),
            ("trading journal", 0.75),
        ),
    ),
    Topic(
        id="market_structure",
        label="Market structure and regimes",
        description="Swings, higher highs and lows, ranges versus trends, regime detection.",
        terms=(
            ("market structure", 1.0),
            ("higher highs", 0.75),
            ("higher lows", 0.75),
            ("lower highs", 0.75),
            ("lower lows", 0.75),
            ("break of structure", 1.0),
            ("regime", 0.5),
            ("ranging market", 0.75),
            ("trending market", 0.75),
            ("consolidation", 0.5),
            ("adx", 0.5),
            ("range", 0.25),
        ),
    ),
    Topic(
        id="timeframes",
        label="Timeframes",
        description="Which chart intervals to use and how higher timeframes filter lower ones.",
        terms=(
            ("higher timeframe", 1.0),
            ("lower timeframe", 1.0),
            ("multi-timeframe", 1.0),
            ("multiple timeframes", 1.0),
            ("top-down", 0.5),
            ("timeframe", 0.5),
            ("re:\\b\\d+[- ]?(?:minute|min|hour|day|week)(?:ly)?\\b", 0.35),
            ("daily chart", 0.35),
            ("weekly chart", 0.35),
        ),
    ),
    Topic(
        id="funding_open_interest",
        label="Funding and open interest",
        description="Perpetual futures specifics: funding payments, open interest, crowding.",
        terms=(
            ("funding rate", 1.0),
            ("open interest", 1.0),
            ("perpetual*", 0.75),
            ("funding", 0.5),
            ("mark price", 0.5),
            ("basis", 0.35),
            ("long/short ratio", 0.75),
        ),
    ),
    Topic(
        id="session_filters",
        label="Time and session filters",
        description="Trading only in some hours, days or sessions; avoiding news and weekends.",
        terms=(
            ("session filter", 1.0),
            ("time filter", 1.0),
            ("time of day", 0.75),
            ("hour of day", 0.75),
            ("asian session", 1.0),
            ("london session", 1.0),
            ("new york session", 1.0),
            ("session", 0.35),
            ("weekend", 0.5),
            ("utc", 0.35),
            ("news", 0.25),
        ),
    ),
    Topic(
        id="exits_stops",
        label="Exits and stops",
        description="Stop losses, trailing stops, targets, breakeven moves and time stops.",
        terms=(
            ("stop loss", 1.0),
            ("trailing stop", 1.0),
            ("time stop", 1.0),
            ("chandelier", 1.0),
            ("breakeven", 0.75),
            ("break-even", 0.75),
            ("take profit", 0.75),
            ("profit target", 0.75),
            ("target", 0.35),
            ("exit", 0.35),
            ("stop", 0.35),
            ("scale out", 0.5),
        ),
    ),
    Topic(
        id="momentum",
        label="Momentum and oscillators",
        description="Oscillators and rate-of-change measures: RSI, MACD, momentum.",
        terms=(
            ("momentum", 0.75),
            ("rsi", 0.75),
            ("relative strength index", 1.0),
            ("macd", 1.0),
            ("rate of change", 1.0),
            ("oscillator", 0.75),
            ("stochastic", 0.75),
        ),
    ),
    Topic(
        id="backtesting",
        label="Backtesting and evaluation",
        description="Testing rules on history: expectancy, win rate, overfitting, out-of-sample.",
        terms=(
            ("backtest*", 1.0),
            ("out-of-sample", 1.0),
            ("walk-forward", 1.0),
            ("overfit*", 1.0),
            ("curve fit*", 1.0),
            ("expectancy", 0.75),
            ("win rate", 0.75),
            ("profit factor", 0.75),
            ("sharpe", 0.75),
            ("sample size", 0.5),
        ),
    ),
    Topic(
        id="execution_costs",
        label="Execution and costs",
        description="Fees, slippage, spreads and order types that turn signals into fills.",
        terms=(
            ("slippage", 1.0),
            ("trading costs", 1.0),
            ("taker fee", 1.0),
            ("maker fee", 1.0),
            ("commission", 0.75),
            ("fees", 0.5),
            ("spread", 0.35),
            ("limit order", 0.5),
            ("market order", 0.5),
        ),
    ),
)


def topic_ids() -> list[str]:
    """The ids of every topic, in ontology order."""
    return [topic.id for topic in ONTOLOGY]
