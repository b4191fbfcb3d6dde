"""Write the sample corpus: three short trading books as PDFs plus one Markdown note.

Why: the knowledge track needs books to ingest in tests, demos and the retrieval evaluation, and
real trading books are copyrighted. These texts are original, concrete (rules with explicit
numbers that a concept extractor can turn into modules) and typeset like real books: a PDF
outline, running headers, page-number footers and words hyphenated across line ends.

Output is deterministic: fixed metadata dates and no random file id, so running the script
twice writes byte-identical files. Usage::

    .venv/bin/python scripts/make_sample_books.py [output_folder]   # default: data/books

The rules in these books are illustrations for testing the factory, not trading advice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "data" / "books"
FIXED_DATE = "D:20260101000000Z"
AUTHOR = "Factory Sample Press"


def main(argv: list[str] | None = None) -> int:
    """Write every sample book into the folder given as the first argument (or data/books)."""
    args = sys.argv[1:] if argv is None else argv
    output = Path(args[0]) if args else DEFAULT_OUTPUT
    for path in write_corpus(output):
        print(path)
    return 0


def write_corpus(output: Path) -> list[Path]:
    """Write the PDFs and the Markdown note into ``output``; return the written paths."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in BOOKS:
        path = output / spec.file_name
        path.write_bytes(render_book(spec).pdf)
        written.append(path)
    note = output / NOTE_FILE_NAME
    note.write_text(NOTE_MARKDOWN, encoding="utf-8")
    written.append(note)
    return written


@dataclass(frozen=True)
class BookSpec:
    """A book to typeset: chapters are (title, body in a tiny markup, see ``_blocks``)."""

    file_name: str
    title: str
    subtitle: str
    header_style: str  # "title" | "title_and_number" (page number on the header line)
    footer_style: str  # "number" | "page_of" | "none"
    chapters: tuple[tuple[str, str], ...]


@dataclass
class RenderedBook:
    """The PDF bytes plus what was placed on each page (for tests and the eval set)."""

    pdf: bytes
    page_texts: list[str] = field(default_factory=list)  # body text per page, words as written
    chapter_pages: dict[str, int] = field(default_factory=dict)  # chapter title -> first page
    hyphenated: list[str] = field(default_factory=list)  # words broken across line ends


# --------------------------------------------------------------------------------------------
# Typesetting
# --------------------------------------------------------------------------------------------

PAGE_WIDTH, PAGE_HEIGHT = 420.0, 595.0  # A5 in points
LEFT, RIGHT = 50.0, 370.0
FIRST_BASELINE, LAST_BASELINE = 72.0, 540.0
BODY_FONT, BOLD_FONT = "helv", "hebo"
BODY_SIZE, BODY_LEADING, PARAGRAPH_GAP = 11.0, 15.0, 6.0
CHAPTER_SIZE, SECTION_SIZE = 15.0, 11.5
RUNNING_SIZE = 8.0
CHAPTER_ON_SAME_PAGE_ROOM, CHAPTER_GAP = 0.6, 18.0
BULLET_INDENT = 12.0
VOWELS = set("aeiouy")


def render_book(spec: BookSpec) -> RenderedBook:
    """Typeset ``spec`` into a PDF with outline, running headers, footers and hyphenation."""
    doc = pymupdf.open()
    result = RenderedBook(pdf=b"")
    _title_page(doc, spec)
    result.page_texts.append(f"{spec.title} {spec.subtitle} {AUTHOR} {TITLE_PAGE_NOTE}")
    toc: list[list] = []
    writer = _PageWriter(doc, result)
    for chapter_title, body in spec.chapters:
        # A chapter starts on a new page unless most of the current page is still free.
        if writer.page is None or writer.room() < CHAPTER_ON_SAME_PAGE_ROOM:
            writer.new_page()
        else:
            writer.y += CHAPTER_GAP
        result.chapter_pages[chapter_title] = doc.page_count
        toc.append([1, chapter_title, doc.page_count])
        writer.paragraph(chapter_title, BOLD_FONT, CHAPTER_SIZE, gap_after=10.0)
        for kind, text in _blocks(body):
            if kind == "h2":
                writer.ensure_room(3)
                toc.append([2, text, doc.page_count])
                writer.paragraph(text, BOLD_FONT, SECTION_SIZE, gap_before=4.0)
            elif kind == "li":
                writer.paragraph(text, BODY_FONT, BODY_SIZE, bullet=True)
            else:
                writer.paragraph(text, BODY_FONT, BODY_SIZE)
    writer.flush()
    total = doc.page_count
    for index in range(1, total):
        _running_lines(doc[index], spec, index + 1, total)
    for page in doc:
        page.clean_contents()  # one compact content stream per page
    doc.set_toc(toc)
    doc.set_metadata(
        {
            "title": spec.title,
            "author": AUTHOR,
            "subject": spec.subtitle,
            "keywords": "trading, sample corpus",
            "creator": "scripts/make_sample_books.py",
            "producer": "PyMuPDF",
            "creationDate": FIXED_DATE,
            "modDate": FIXED_DATE,
        }
    )
    result.pdf = doc.tobytes(garbage=4, deflate=True, no_new_id=True)
    doc.close()
    return result


TITLE_PAGE_NOTE = (
    "Written for the sample corpus of the Trading Research Factory. Original text; every rule "
    "in this book is an illustration for testing software, not trading advice."
)


def _title_page(doc: pymupdf.Document, spec: BookSpec) -> None:
    page = doc.new_page(width=PAGE_WIDTH, height=PAGE_HEIGHT)
    y = 180.0
    for line in _wrap_plain(spec.title, BOLD_FONT, 22.0, RIGHT - LEFT):
        page.insert_text((LEFT, y), line, fontname=BOLD_FONT, fontsize=22.0)
        y += 28.0
    y += 8.0
    for line in _wrap_plain(spec.subtitle, BODY_FONT, 12.0, RIGHT - LEFT):
        page.insert_text((LEFT, y), line, fontname=BODY_FONT, fontsize=12.0)
        y += 16.0
    page.insert_text((LEFT, y + 30.0), AUTHOR, fontname=BODY_FONT, fontsize=11.0)
    y = 470.0
    for line in _wrap_plain(TITLE_PAGE_NOTE, BODY_FONT, 8.5, RIGHT - LEFT):
        page.insert_text((LEFT, y), line, fontname=BODY_FONT, fontsize=8.5)
        y += 11.0


def _running_lines(page: pymupdf.Page, spec: BookSpec, number: int, total: int) -> None:
    page.insert_text((LEFT, 38.0), spec.title, fontname=BODY_FONT, fontsize=RUNNING_SIZE)
    if spec.header_style == "title_and_number":
        label = str(number)
        width = pymupdf.get_text_length(label, fontname=BODY_FONT, fontsize=RUNNING_SIZE)
        page.insert_text((RIGHT - width, 38.0), label, fontname=BODY_FONT, fontsize=RUNNING_SIZE)
    footer = {"number": str(number), "page_of": f"Page {number} of {total}"}.get(spec.footer_style)
    if footer:
        width = pymupdf.get_text_length(footer, fontname=BODY_FONT, fontsize=RUNNING_SIZE)
        x = (PAGE_WIDTH - width) / 2
        page.insert_text((x, 568.0), footer, fontname=BODY_FONT, fontsize=RUNNING_SIZE)


class _PageWriter:
    """Places wrapped, hyphenated lines on pages and records the text of each page."""

    def __init__(self, doc: pymupdf.Document, result: RenderedBook) -> None:
        self.doc = doc
        self.result = result
        self.page: pymupdf.Page | None = None
        self.y = FIRST_BASELINE
        self.words: list[str] = []

    def new_page(self) -> None:
        self.flush()
        self.page = self.doc.new_page(width=PAGE_WIDTH, height=PAGE_HEIGHT)
        self.y = FIRST_BASELINE

    def flush(self) -> None:
        if self.page is not None and self.words:
            self.result.page_texts.append(" ".join(self.words))
        elif self.page is not None:
            self.result.page_texts.append("")
        self.words = []
        self.page = None

    def room(self) -> float:
        """Share of the text area still free on the current page."""
        return max(0.0, LAST_BASELINE - self.y) / (LAST_BASELINE - FIRST_BASELINE)

    def ensure_room(self, lines: int) -> None:
        if self.y + lines * BODY_LEADING > LAST_BASELINE:
            self.new_page()

    def paragraph(
        self,
        text: str,
        font: str,
        size: float,
        *,
        bullet: bool = False,
        gap_before: float = 0.0,
        gap_after: float = PARAGRAPH_GAP,
    ) -> None:
        leading = BODY_LEADING if size <= BODY_SIZE else size * 1.3
        indent = BULLET_INDENT if bullet else 0.0
        if bullet:
            text = f"- {text}"
        self.y += gap_before
        lines, broken = _wrap(text, font, size, RIGHT - LEFT - indent, hyphenate=size <= BODY_SIZE)
        self.result.hyphenated.extend(broken)
        on_this_page: list[tuple[str, str]] = []
        for index, (line, line_end) in enumerate(lines):
            if self.y > LAST_BASELINE:
                self.words.extend(_logical_words(on_this_page))
                on_this_page = []
                self.new_page()
            x = LEFT + indent if bullet and index > 0 else LEFT
            assert self.page is not None
            self.page.insert_text((x, self.y), line, fontname=font, fontsize=size)
            on_this_page.append((line, line_end))
            self.y += leading
        self.words.extend(_logical_words(on_this_page))
        self.y += gap_after


def _logical_words(lines: list[tuple[str, str]]) -> list[str]:
    """Words of consecutive lines as the author wrote them: an inserted ("soft") hyphen is
    removed and the word joined, a break at a real hyphen keeps it ("hard")."""
    text = ""
    glue = ""
    for line, line_end in lines:
        text = f"{text}{glue}{line}"
        if line_end == "soft":
            text, glue = text[:-1], ""
        else:
            glue = "" if line_end == "hard" else " "
    return text.split()


def _wrap(
    text: str, font: str, size: float, width: float, *, hyphenate: bool
) -> tuple[list[tuple[str, str]], list[str]]:
    """Greedy line breaking; a long word is hyphenated at a syllable-like point when the rest
    of the line has room. Returns (line, end) pairs, end in "space" | "soft" | "hard", and
    the words broken with an inserted hyphen."""
    lines: list[tuple[str, str]] = []
    broken: list[str] = []
    line = ""
    queue = text.split()
    while queue:
        word = queue.pop(0)
        candidate = f"{line} {word}" if line else word
        if _width(candidate, font, size) <= width:
            line = candidate
            continue
        split = _split_word(line, word, font, size, width) if hyphenate and line else None
        if split is not None:
            head, tail, real_hyphen = split
            lines.append((f"{line} {head}-", "hard" if real_hyphen else "soft"))
            if not real_hyphen:
                broken.append(word)
            line = ""
            queue.insert(0, tail)
            continue
        lines.append((line, "space"))
        line = word
    if line:
        lines.append((line, "space"))
    return lines, broken


def _split_word(
    line: str, word: str, font: str, size: float, width: float
) -> tuple[str, str, bool] | None:
    """Where to break ``word`` at the end of ``line``: (head, tail, at_real_hyphen) or None."""
    if "-" in word.strip("-"):
        head, _, tail = word.partition("-")
        if head.isalpha() and tail and _width(f"{line} {head}-", font, size) <= width:
            return head, tail, True
        return None
    core = word.rstrip(".,;:!?)")
    if len(core) < 8 or not core.isalpha() or not core.islower():
        return None
    best = None
    for cut in range(4, len(core) - 3):
        head = word[:cut]
        if _width(f"{line} {head}-", font, size) > width:
            break
        left, right = core[cut - 1], core[cut]
        syllable = (left in VOWELS and right not in VOWELS) or (
            left not in VOWELS and right not in VOWELS and left != right
        )
        if syllable:
            best = cut
    if best is None:
        return None
    return word[:best], word[best:], False


def _width(text: str, font: str, size: float) -> float:
    return pymupdf.get_text_length(text, fontname=font, fontsize=size)


def _wrap_plain(text: str, font: str, size: float, width: float) -> list[str]:
    lines, _ = _wrap(text, font, size, width, hyphenate=False)
    return [line for line, _ in lines]


def _blocks(body: str) -> list[tuple[str, str]]:
    """Tiny markup: blank-line separated paragraphs, "## " section headings, "- " bullets."""
    blocks = []
    for chunk in body.strip().split("\n\n"):
        lines = [line.strip() for line in chunk.strip().splitlines() if line.strip()]
        if not lines:
            continue
        if lines[0].startswith("## "):
            blocks.append(("h2", lines[0][3:].strip()))
            lines = lines[1:]
            if not lines:
                continue
        if all(line.startswith("- ") for line in lines):
            blocks.extend(("li", line[2:].strip()) for line in lines)
        else:
            blocks.append(("p", " ".join(lines)))
    return blocks


# --------------------------------------------------------------------------------------------
# The books
# --------------------------------------------------------------------------------------------

TREND_BOOK = BookSpec(
    file_name="trend_following_across_timeframes.pdf",
    title="Trend Following Across Timeframes",
    subtitle="Crossovers, channel breakouts, trend filters, trailing stops and pyramiding",
    header_style="title",
    footer_style="number",
    chapters=(
        (
            "Chapter 1: Why Trends Persist",
            """
A trend is a sequence of higher highs and higher lows in an advance, or lower highs and lower
lows in a decline. Trends persist because information spreads slowly: large participants need
days or weeks to build a position, late buyers chase after the move is obvious, and traders
who are short are forced to cover as losses grow. The trend follower does not forecast; he
waits for the market to show its direction and then joins it.

## The shape of the returns

A trend-following method loses often and wins big. In our tests on liquid crypto perpetuals a
simple breakout system won only 35 to 40 percent of its trades, yet the average winner was
about 2.5 times the average loser. The expectancy of such a system is positive because the few
large trends pay for many small losses. Expect runs of eight or ten losing trades in a row
and plan your position size so that such a streak costs no more than 10 percent of equity.

## When trend following fails

Trend systems bleed in sideways markets. When price oscillates inside a band, every breakout
reverses and every crossover is a whipsaw. A useful regime check is the 14-period ADX: treat
readings above 25 as trending and readings below 20 as a range, and reduce or stop trading the
trend rules while the daily ADX stays below 20. Another check is the slope of the 50-period
moving average: if it has moved less than half an ATR over the last ten bars, the market is
drifting and crossover signals are mostly noise.

## Discipline over prediction

The hardest part of trend following is taking every signal. The trade you skip after three
losses is often the one that would have paid for the whole quarter. Write the rules down, size
every trade the same way, and judge the method over at least 100 trades, never over a week.
""",
        ),
        (
            "Chapter 2: Moving-Average Crossovers",
            """
The moving-average crossover is the oldest mechanical trend entry. A fast average follows
price closely, a slow average lags behind, and the moment the fast one crosses the slow one
marks a change in the short-term direction. Crossovers are simple, robust and easy to test,
which makes them a good first module for any system.

## The basic 20/50 rule

Enter long when the 20-period simple moving average crosses above the 50-period simple moving
average on the 1-hour chart while the 4-hour close is above its 200-period SMA. Enter short on
the mirror image: the 20 SMA crosses below the 50 SMA and the 4-hour close is below its 200 SMA.
Decide on the close of the bar where the cross happens and fill at the open of the next bar;
never act on a cross that is still forming inside an open bar.

## Where to put the stop

Place the initial stop 2 ATR below the entry price for a long and 2 ATR above it for a short,
using the 14-period ATR of the entry timeframe. The stop distance defines the risk of the trade
and therefore its size: a wide stop means a small position. Do not move the stop further away
once the trade is open. If the 1-hour ATR is unusually large, for example more than twice its
100-bar average, skip the signal: the market is too wild for a 2 ATR stop to mean anything.

## Filtering whipsaws

Most crossover losses come from crosses that reverse within a few bars. Three filters help.
First, require the 50 SMA to be rising over the last 10 bars for longs and falling for shorts.
Second, wait for a confirmation close: the fast average must stay above the slow one for two
consecutive closes before you enter. Third, ignore a new cross within 5 bars of the previous
one. Each filter removes some good trades, so test them one at a time.

## Exits

The simplest exit is the opposite cross: close the long when the 20 SMA crosses back below the
50 SMA. This exit gives back a lot of open profit at the end of a trend. A trailing stop,
described in chapter 5, usually captures more of the move. Exponential averages of 9 and 21
periods react faster than the 20/50 pair and suit the 15-minute chart, at the cost of more
false signals.
""",
        ),
        (
            "Chapter 3: Donchian Channel Breakouts",
            """
A Donchian channel is drawn from the highest high and the lowest low of the last N bars. A
close above the upper line means price has made a new N-bar high, which is about as plain a
definition of an uptrend as exists. Channel breakouts need no averages and no parameters
except the lookback, which makes them hard to overfit.

## The 55-bar breakout

Enter long when the daily close exceeds the highest high of the previous 55 days, and enter
short when it falls below the lowest low of the previous 55 days. The previous bars matter:
the channel must be computed without the current bar, or the rule can never trigger. Exit a
long when price closes below the lowest low of the last 20 days, and exit a short on a close
above the 20-day high. This Donchian 55/20 pair catches the large moves and ignores the small.

## The faster 20/10 variant

For more trades use a 20-bar entry channel and a 10-bar exit channel. On the 4-hour chart of a
liquid coin this variant trades two or three times a month. It wins less often than the 55/20
system and depends more on low trading costs, so add at least 0.1 percent per side of costs
in every backtest.

## Stops and filters

Put the initial stop 2 ATR from the entry, measured with the 20-period ATR, or at the opposite
side of the exit channel, whichever is closer. Skip a breakout when the channel is very narrow:
if the distance between the 55-bar high and the 55-bar low is less than 3 ATR, the market has
been asleep and a breakout is as likely to fail as to run. A volume check helps on crypto: the
breakout bar should trade at least 1.5 times the 20-bar average volume.

## Breakout failures

About half of all breakouts fail and return inside the channel within a few bars. Accept this
as the cost of the method and keep the loss small with the stop. Do not re-enter immediately
after a failed breakout; wait until a new channel extreme is made.
""",
        ),
        (
            "Chapter 4: The Higher-Timeframe Filter",
            """
Trades in the direction of the larger trend work better than trades against it. The
higher-timeframe filter makes this idea mechanical: decide the allowed direction on a slower chart,
then look for entries only in that direction on a faster chart.

## Choosing the pair of timeframes

Use a ratio of four to six between the timeframes. Good pairs are the daily chart with the
4-hour chart, the 4-hour chart with the 1-hour chart, and the 1-hour chart with the 15-minute
chart. A ratio of two adds little information; a ratio of twenty makes the filter so slow that
half of each trend is over before it agrees. For three layers, a weekly or daily chart sets
the bias, a 4-hour chart defines the setup and a 1-hour chart times the entry.

## The filter rule

Allow longs only while the last closed 4-hour bar is above its 200-period SMA and that SMA is
higher than it was 20 bars ago. Allow shorts only in the mirror case. When neither holds, stand
aside. The same rule works one level lower: a 15-minute entry system filtered by the 1-hour
close relative to the 1-hour 50 EMA.

## Only closed bars

The filter must use only higher-timeframe bars that have closed. At 10:15 the 4-hour bar that
opened at 08:00 is still forming; the filter must read the bar that closed at 08:00, not the
one in progress. A backtest that reads the forming bar looks into the future and will show
results that no live system can reproduce. Align the slow series to the fast one by close
time, and hold the last closed value until the next slow bar closes.

## What the filter buys

In our tests on BTC and ETH perpetuals the 4-hour filter removed about 40 percent of the 1-hour
crossover trades and most of the removed trades were losers. The win rate rose from 34 to 41
percent and the maximum drawdown fell by roughly a third. The price is a later entry after a
major reversal, because the slow average needs time to turn.
""",
        ),
        (
            "Chapter 5: ATR Trailing Stops",
            """
A trailing stop follows price in the direction of the trade and never moves back. It turns
an open profit into a locked profit and lets the market decide when the trend is over. The
average true range is the natural unit for the distance, because it adapts to volatility.

## The chandelier exit

The chandelier exit hangs the stop from the highest high since entry: for a long, the stop is
the highest high since entry minus 3 times the 22-period ATR. For a short, it is the lowest
low since entry plus 3 ATR. Recompute it at every close and only ever raise it for a long or
lower it for a short. A stop that would move against the trade stays where it is.

## From initial stop to trailing stop

Start with the fixed initial stop of 2 ATR from chapter 2. Do not trail until the trade has
earned one R, that is until the open profit equals the initial risk. From then on use the
chandelier at 3 ATR. After the trade reaches 3R, tighten the multiple to 2 ATR, because late
trend moves tend to end with a sharp reversal and a tighter stop keeps more of the gain.

## Choosing the multiple

A multiple of 2 ATR exits early and often; 4 ATR rides long trends but gives back a lot at the
end. Between 2.5 and 3.5 ATR is a reasonable range for the 1-hour and 4-hour charts. Test the
multiple together with the entry: a fast entry pairs with a wider trail, a slow breakout entry
with a tighter one.

## Ratchet on closes, not ticks

Update the trailing level only when a bar closes, and trigger the exit intrabar when price
touches the level. If a bar opens beyond the stop after a gap, the fill is the open price, not
the stop price. Count those gap fills in the backtest; on perpetual futures they happen after
liquidation cascades and large news.
""",
        ),
        (
            "Chapter 6: Pyramiding Into Winners",
            """
Pyramiding means adding to a position that is already profitable. Trend following makes most
of its money in a few large moves; adding units while such a move unfolds increases the gain
from exactly the trades that matter, while the losers stay at their original small size.

## The add rule

Add one unit each time price moves 1 ATR in favor of the trade from the last entry price. Use
at most 4 units in total, the first entry included. Each unit risks 0.5 percent of equity on
its own stop, so a full pyramid risks 2 percent of equity at most. Never add to a losing
position: averaging down is the opposite of trend following.

## Moving the stops

When a unit is added, move the stop of every earlier unit to the stop of the newest unit, which
is 2 ATR below its entry for a long. The pyramid is then protected as a whole, and the earliest
units carry a locked profit. If the stops of all units are hit, the trade as a whole usually
still ends near breakeven or better.

## The heat limit

Portfolio heat is the sum of the open risk of all positions. With pyramids it can grow fast,
so cap it: the total distance to the stops across all open units and all markets must never
exceed 6 percent of equity. When an add would break the cap, skip the add, not the stop.

## When not to pyramid

Do not pyramid on timeframes below 1 hour, where costs eat the small adds, and do not pyramid
in a market whose daily ADX is below 20. Pyramiding amplifies a trend edge; in a range it only
amplifies losses.
""",
        ),
        (
            "Chapter 7: A Complete Trend System",
            """
This chapter combines the previous rules into one complete system that can be written down,
tested and traded without judgment calls.

## The rules

- Market: BTCUSDT and ETHUSDT perpetual futures, 1-hour chart for entries, 4-hour chart as filter.
- Filter: longs only when the last closed 4-hour close is above its 200 SMA and that SMA is rising over 20 bars; shorts in the mirror case.
- Entry: the 20 SMA crosses the 50 SMA on the 1-hour chart in the allowed direction; decide at the close, fill at the next open.
- Initial stop: 2 ATR(14) from the entry price.
- Trailing stop: after 1R of open profit, a chandelier stop at 3 ATR(22), tightened to 2 ATR after 3R.
- Pyramiding: one more unit per 1 ATR of favorable movement, at most 3 units.
- Risk: 0.75 percent of equity per unit, total heat at most 4 percent of equity.
- Exit: the trailing stop, or the opposite crossover, whichever comes first.

## What to expect

Tested over two years of 1-hour data this kind of system trades about 60 times a year per
market, wins about 38 percent of the time and has an average win of about 2.8R. Its worst
drawdown in our test was 18 percent and it spent up to five months without a new equity high.
Anyone who trades it must accept such flat periods in advance.

## Testing it honestly

Include fees of 0.055 percent per side for market orders and 2 basis points of slippage, pay
funding every 8 hours while in a position, and test on data the rules were not designed on.
Vary every parameter by 20 percent in both directions; if the results collapse, the system is
fitted to noise. Only then move it to a demo account.
""",
        ),
        (
            "Chapter 8: Testing Trend Rules Without Fooling Yourself",
            """
Every trend rule looks good on the chart it was invented on. The purpose of a backtest is not
to find the best parameters but to find out whether the rule has an edge at all, and how large
the bad periods are. Most of the work is protecting the test from your own optimism.

## Split the data before you look

Keep the last 30 percent of the history out of sight while you design the rules. Design and
tune on the first 70 percent, then run the finished rules once on the hidden part. If the
out-of-sample result is much worse than the in-sample result, the rules were fitted to noise.
Running the hidden test again after each change turns it into in-sample data.

## Walk-forward testing

A walk-forward test repeats the split through time: tune on two years, test on the following
six months, move forward six months and repeat. The joined test windows give an equity curve
that was never used for tuning. For trend rules, look for parameters that are good in most
windows rather than the best in any single one.

## Count every trial

If you try 200 combinations of averages and stops, the best one will look good by luck alone.
Record how many configurations you tried and deflate the Sharpe ratio of the winner for that
number of trials. A Sharpe ratio of 1.5 found among 200 trials on three years of data is weak
evidence; the same ratio from the first and only rule you tested is strong evidence.

## Robust parameters

Plot the result of a parameter sweep as a surface. A good trend rule shows a broad plateau: a
fast average anywhere between 15 and 30 and a slow one between 40 and 80 should all make money.
A single sharp peak surrounded by losses is a fitted accident. Prefer the middle of a plateau
to its highest point.

## Costs and delays

Double the fees and slippage and delay every fill by one bar. A trend rule with a real edge
survives both with a smaller profit; a rule that dies under doubled costs was trading noise at
a high frequency. Trade count matters too: fewer than 30 trades per market say little about
anything.
""",
        ),
    ),
)

MEAN_REVERSION_BOOK = BookSpec(
    file_name="mean_reversion_and_ranges.pdf",
    title="Mean Reversion and Ranges",
    subtitle="Oscillator extremes, band fades, z-scores, range detection and time stops",
    header_style="title_and_number",
    footer_style="none",
    chapters=(
        (
            "Chapter 1: Why Prices Snap Back",
            """
Prices overshoot. A burst of forced selling, a large market order in a thin book or a wave of
liquidations pushes price away from where buyers and sellers agree, and once the pressure is
gone price drifts back. Mean reversion trades that return: buy what has fallen too far too
fast, sell what has risen too far too fast, and take the profit when price is back to normal.

## The shape of the returns

Mean reversion is the mirror of trend following. It wins often, typically 60 to 70 percent of
trades, but the winners are small and a single trade that keeps going against you can erase
ten winners. The return distribution has a fat left tail. Every mean reversion rule therefore
needs a hard stop and a time limit, and its position size must survive the occasional trend
that does not come back.

## Where it works

Reversion works best in ranges, in liquid markets, and on short horizons from 15 minutes to a
few days. It works poorly during strong trends, around scheduled news and right after a
breakout from a long consolidation. The first job of a reversion system is to know which kind
of market it is in; the next chapter shows how to detect a range.

## Do not fight a trend

Never fade a market that makes new 55-day highs or lows with rising volume. A stretched price in
a strong trend can stay stretched for weeks. A simple guard is to take long reversion trades
only when the daily close is above the 200-day SMA and short trades only when it is below.
""",
        ),
        (
            "Chapter 2: Detecting a Range",
            """
A range is a market that moves back and forth between a floor and a ceiling without making
progress. Before using any fade, confirm that the market is ranging with at least two of the
following tests, computed on the timeframe you trade.

## Four range tests

- ADX: the 14-period ADX is below 20 and has been below 25 for the last 30 bars.
- Flat average: the 50-period SMA has moved less than 0.1 ATR per bar on average over the last 20 bars.
- Boundaries: price has touched the range high at least twice and the range low at least twice within the last 100 bars, and the range is at least 3 ATR tall.
- Quiet bands: the Bollinger bandwidth is in the lowest third of its values over the last 200 bars.

## Drawing the boundaries

Take the range high as the highest close of the last 100 bars and the range low as the lowest
close, not the wicks: wicks mark stop runs, closes mark acceptance. Split the range into ten
equal parts. The bottom 10 percent is the buy zone, the top 10 percent the sell zone, and the
middle is the target for both.

## When the range ends

A range is over when a bar closes outside it by more than 0.5 ATR. Close every fade in that
direction at once and stop taking new fades until a new range has formed, which by the tests
above takes at least 30 bars. Many of the worst reversion losses happen in the first hours of
a breakout, when the old range still looks valid on the chart.

## Regime labels

For backtests, label each bar as range, uptrend or downtrend with these tests, and report
results per regime. A reversion system that makes money only in the range label and loses
little elsewhere is healthy; one that makes its money in trends is a trend system in disguise.
""",
        ),
        (
            "Chapter 3: RSI Extremes",
            """
The relative strength index compares the size of recent up closes with the size of recent
down closes and maps the result to a scale from 0 to 100. Readings near the ends of the scale
mean that one side has dominated for a while, which in a range usually means exhaustion.

## The classic levels

With the standard 14-period RSI, readings below 30 are called oversold and readings above 70
overbought. On their own these levels are weak signals: in a trend the RSI can stay above 70
for a long time. Use them only after the range tests of chapter 2 have passed, and require the
RSI to turn back: enter long when the 14-period RSI crosses back above 30 from below.

## The short-term RSI(2) rule

A very short RSI reacts to two or three bad closes and makes a sharp reversion signal. Buy
when the 2-period RSI closes below 10 while the close is above the 200-period SMA. Exit when
the 2-period RSI closes above 70 or when the close is above the 5-period SMA, whichever comes
first. For shorts, sell when the 2-period RSI is above 90 while the close is below the 200
SMA, and cover when it falls below 30.

## Timeframes

The RSI(2) rule was built for daily bars but works on 1-hour and 4-hour bars of liquid crypto
perpetuals with wider costs taken into account. Below the 1-hour chart the signal becomes
noise and the costs of entering and exiting take most of the small average gain.

## Stops for oscillator trades

An RSI trade has no natural stop level, because the entry is not tied to a price level. Use a
stop of 2.5 ATR below the entry for longs, and combine it with the time stop from chapter 6:
if the trade has not reached its exit within 5 bars, close it.
""",
        ),
        (
            "Chapter 4: Bollinger Band Fades",
            """
Bollinger bands are placed a number of standard deviations above and below a moving average.
With the usual settings, a 20-period SMA and bands at 2 standard deviations, about nine closes
in ten stay inside the bands in a quiet market. A close outside the bands is an excursion that
often does not last.

## The fade entry

Do not buy the first close below the lower band; in a selloff the next close is often lower
still. Wait until a bar closes below the lower band and the next bar closes back inside it,
then buy at the open of the following bar. For shorts, wait for a close above the upper band
followed by a close back inside. This re-entry rule gives up a little price for much better
odds.

## Target and stop

The target is the middle band, the 20-period SMA. Take half of the position off there and
close the rest at the opposite band or after 10 bars. Place the stop 1.5 ATR beyond the lowest
low of the excursion for a long, or beyond the highest high for a short. The middle band moves
while the trade is open; recompute the target at every close.

## When the bands expand

A fade against expanding bands is a fade against a breakout. Skip the trade when the bandwidth,
the distance between the bands divided by the middle band, has grown by more than 50 percent
over the last 5 bars. Also skip it when the close is more than 3 standard deviations from the
middle band: such moves are usually news, not noise.

## Band walk

In a strong trend price can walk along one band for many bars, closing outside it again and
again. If two fades in the same direction are stopped out within 20 bars, stop fading that
market until the bandwidth has shrunk back to its median.
""",
        ),
        (
            "Chapter 5: Z-Score Reversion",
            """
The z-score measures how far the close is from its average in units of standard deviation:
z equals the close minus the 50-period SMA, divided by the 50-period standard deviation of the
close. A z of minus 2 means the close is two standard deviations below its average. Unlike a
band, the z-score is a single number that can be compared across markets and timeframes.

## Entry and exit levels

Enter long when z falls below minus 2.0 and enter short when it rises above plus 2.0. Exit
when z returns to zero, or take a smaller profit at 0.5 on the way back if the market is
choppy. The stop is a z level too: close the trade if z reaches minus 3.5 for a long or plus
3.5 for a short, because by then the move is no longer an overshoot but a new trend.

## Lookback and timeframe

On 15-minute bars of BTC and ETH perpetuals a 50-bar lookback, about half a day, works well.
A 20-bar lookback gives more signals of lower quality; a 200-bar lookback reacts too slowly
and turns the rule into a trend filter. Keep the same lookback for the average and the
standard deviation.

## Pairs and spreads

The z-score is also the standard tool for pairs: compute the spread between two related
markets, for example the log price of ETH minus a multiple of the log price of BTC, and trade
the z-score of that spread with the same entry and exit levels. Estimate the multiple again at
most once a month and only from past data.

## A warning about fat tails

Crypto returns have fat tails, so a move beyond 3 standard deviations happens far more often
than a normal distribution suggests. Never add to a z-score trade as it moves further against
you; the hard stop at 3.5 is what keeps one bad day from becoming a bad year.
""",
        ),
        (
            "Chapter 6: Time Stops and Fast Exits",
            """
A reversion trade is a bet that an overshoot will correct soon. If it does not correct soon,
the reason for the trade is gone, even when the price stop has not been hit. The time stop
turns this idea into a rule.

## The time stop rule

Close any reversion trade that has not reached its target after 10 bars, whatever its profit
or loss. For RSI(2) trades use 5 bars. In our tests more than 80 percent of the eventual
winners reached their target within the time stop, while the trades that ran past it lost
money on average. The time stop cut the average loss by a quarter.

## Partial exits

Reversion profits are small, so take them when they come. Close half of the position at the
middle band or at a z-score of zero and move the stop on the rest to the entry price. The
second half is a free option on a larger snap back toward the opposite side of the range.

## Why no trailing stops

Trailing stops suit trends, where the size of the move is unknown. In a reversion trade the
target is known in advance, and a trailing stop only adds exits at worse prices. Use a fixed
target, a fixed stop and a time stop, nothing else.

## Session effects

Many fades on crypto fail in the hour after 00:00 UTC, when funding settles and daily candles
close, and in the first hour of the New York session. Do not open new reversion trades in those
windows; manage the open ones as usual.
""",
        ),
        (
            "Chapter 7: Trading the Edges of a Range",
            """
Once a range is confirmed, its edges are the best places to trade: the stop can sit just
outside the range, close to the entry, and the target, the far side or the middle, is several
times farther away.

## The edge rules

Buy when price closes in the bottom 10 percent of the range with the 14-period RSI below 40,
and sell when it closes in the top 10 percent with the RSI above 60. Place the stop 0.5 ATR
beyond the range boundary. Take half of the profit at the middle of the range and the rest at
the far 20 percent of the range. With a range 6 ATR tall these rules give trades with a reward
about three times the risk.

## The false breakout trade

Ranges often end with a false break: price pokes through the boundary, triggers the stops
resting there and falls back inside. When a bar closes back inside the range within 3 bars of
a break, enter in the direction of the range middle with a stop 0.5 ATR beyond the extreme of
the false break. These trades are among the best in range trading because the trapped
breakout traders must exit in your direction.

## How many touches

The first test of a boundary is the most reliable; after the fourth test the boundary is
well known and more likely to break. Stop trading an edge after three losing fades at it, and
wait for a new range.
""",
        ),
        (
            "Chapter 8: Reversion on Perpetual Futures",
            """
Perpetual futures add their own sources of overshoot: liquidation cascades, funding squeezes
and thin order books at night. They also add their own costs. This chapter adapts the earlier
rules to them.

## Liquidation wicks

When a cascade of liquidations hits, price can fall 5 percent in minutes and recover most of
it within the hour. Open interest drops sharply during such a move. A reversion entry after
the cascade is often excellent, but never during it: wait for the first 5-minute bar that
closes in the upper half of its range after open interest has stopped falling, then buy with a
stop below the low of the wick.

## Fading distance from VWAP

Intraday, the volume-weighted average price of the session is the level where most of the
day's volume traded. Sell when price is more than 2 ATR of the 15-minute chart above the
session VWAP and buy when it is more than 2 ATR below, with the VWAP as the target. Skip the
trade when the day's volume is already twice its 20-day average for that hour: heavy volume
means the move is real and the VWAP will follow price.

## Funding and the holding period

Reversion trades are short, so funding matters less than for trend trades, but it is not zero.
A position held across a settlement pays or receives a full 8 hours of funding. When funding
is strongly positive, short fades earn it and long fades pay it; close a long fade just before
the settlement if its target is close, rather than paying the funding for a few extra ticks.

## Costs decide the timeframe

A 15-minute reversion trade has an average gain of perhaps 0.3 percent. Paying the taker fee
twice, 0.11 percent in total, takes a third of that. Use limit orders for entries where the
rules allow it, and do not trade a reversion rule below the 15-minute chart unless you pay
maker fees.
""",
        ),
    ),
)

RISK_BOOK = BookSpec(
    file_name="risk_management_and_position_sizing.pdf",
    title="Risk Management and Position Sizing",
    subtitle="Fixed fractional sizing, volatility targets, loss limits, perpetual futures",
    header_style="title",
    footer_style="page_of",
    chapters=(
        (
            "Chapter 1: Survival Comes First",
            """
A trading method with a real edge can still ruin its owner if each position is too large. The
edge only shows over hundreds of trades; the account must live long enough to see them. Risk
management is the set of rules that keeps the account alive through the bad runs that every
method has.

## Losing streaks are normal

With a win rate of 40 percent, the chance of ten losses in a row at some point within 1000
trades is above 90 percent. Risking 5 percent per trade, such a streak costs 40 percent of the
account; risking 1 percent, it costs under 10 percent. Choose the risk per trade so that the
worst streak you can imagine is survivable, not so that the best year looks exciting.

## The risk per trade

Risk between 0.25 and 1 percent of equity per trade. New systems in their first live months
should use the low end; a system with a long and stable record may use the high end. Risk is
measured from entry to stop, including the expected slippage and fees, not from entry to zero.

## Asymmetry of losses

A loss of 10 percent needs a gain of 11 percent to recover, a loss of 25 percent needs 33
percent, and a loss of 50 percent needs 100 percent. Deep drawdowns are therefore much more
expensive than they look, and every rule in this book aims to keep them shallow.
""",
        ),
        (
            "Chapter 2: Fixed Fractional Sizing",
            """
Fixed fractional sizing risks the same fraction of current equity on every trade. The size of
the position follows from the distance to the stop: size equals equity times the risk fraction,
divided by the distance between the entry price and the stop price.

## A worked example

With equity of 10,000 USDT, a risk of 1 percent and a long entry at 100 with the stop at 95,
the amount at risk is 100 USDT and the distance is 5, so the position is 20 units worth 2,000
USDT. If the stop were at 98 the position would be 50 units, worth 5,000 USDT: a tighter stop
allows a larger position for the same risk. Always round the quantity down to the exchange's
lot step, and skip the trade if the rounded quantity is below the minimum order size.

## Equity to use

Use the equity known before the order is sent: realized balance plus the unrealized profit
and loss of open positions. Recompute the size for every trade. After losses positions become
smaller, which slows the drawdown; after wins they grow, which compounds the gains.

## Costs in the risk

Add the round-trip fees and the expected slippage to the stop distance before dividing. With a
taker fee of 0.055 percent per side and 2 basis points of slippage, a stop 1 percent away
really risks about 1.15 percent of the position value. Ignoring this makes every loss slightly
larger than planned.

## Caps

Fixed fractional sizing can ask for absurd positions when the stop is very close. Cap the
notional value of any position at 3 times equity and cap the leverage the exchange account
may use. If the cap binds, the trade simply risks less than planned.
""",
        ),
        (
            "Chapter 3: Volatility Targeting",
            """
Volatility targeting sizes positions so that each one contributes the same expected swing to
the account, regardless of the market. A quiet market gets a large position, a wild market a
small one. Over time this keeps the volatility of the whole account close to a chosen target.

## The sizing formula

Pick a target daily volatility for each position, for example 0.5 percent of equity. Estimate
the daily volatility of the market's returns over the last 20 days. The position value is the
equity times the target, divided by the estimated volatility. With 10,000 USDT of equity, a
target of 0.5 percent and a market that moves 2.5 percent a day, the position is worth 2,000
USDT. When the market's volatility doubles, the position halves.

## ATR-based version

The same idea with the average true range: the number of units equals equity times the target
fraction divided by the 20-day ATR in price terms. Turtle-style systems call one such position
a unit. It makes a coin that moves 5 percent a day and one that moves 1 percent a day carry
the same risk.

## Estimation details

Use an exponentially weighted estimate with a half-life of about 10 days, so that the size
reacts within a week to a change in regime. Recompute the size daily, but only trade the
difference when it is larger than 20 percent of the position, or the costs of constant
rebalancing eat the benefit.

## Limits

Volatility targeting adds size when markets are calm, and calm markets can turn violent in a
single bar. Cap the leverage at 3 times equity whatever the formula says, and do not let the
volatility estimate fall below a floor of half its one-year median.
""",
        ),
        (
            "Chapter 4: Daily Loss Limits and Drawdown Rules",
            """
Stops limit the loss of one trade. Loss limits and drawdown rules limit the loss of a day, a
month and a system. They are the circuit breakers of a trading operation and must work without
anyone having to decide anything in the heat of a bad day.

## The daily loss limit

Stop opening new trades for the rest of the UTC day when the day's realized and unrealized
loss reaches 3 percent of the equity at the start of the day. Close everything and stop for
the day at 4 percent. A bad day is usually a day when the market does something the system
was not built for; more trades rarely fix it.

## Drawdown rules

Measure drawdown from the highest equity ever reached, not from the starting balance. At a
drawdown of 10 percent halve the risk per trade. At 15 percent halve it again. At 20 percent
stop the system completely and review it: compare its live trades with its backtest, look for
a broken assumption, and restart only after a written decision. Return to full size only when
equity has recovered half of the drawdown.

## The kill switch

Automated systems need a kill switch that acts on its own: if the measured drawdown breaches
the limit, or if the data feed has been stale for longer than two bars, it cancels all open
orders, closes the positions and locks trading until a human resets it. A kill switch that
can be reset by the code it protects is not a kill switch.

## Monthly review

Once a month compare the live results of every system with the range of outcomes its backtest
predicted. A system whose live drawdown is already deeper than the worst drawdown in its
backtest is not unlucky; it is probably broken.

## Revenge trading

The most dangerous moment for a discretionary trader is the hour after a large loss. The urge
to win the money back at once leads to oversized trades outside the rules, a pattern known as
revenge trading. Fear after a losing streak does the opposite damage: the trader skips the
next valid signal. The loss limits above exist partly to protect the system from its operator.
Keep a trading journal, write down every rule you broke and why, and read it every week.
""",
        ),
        (
            "Chapter 5: Breakeven Stops and Trade Management",
            """
Trade management covers everything between the entry and the exit: moving the stop, taking
partial profits and deciding when a trade has failed. Good management rules are few, fixed in
advance and the same for every trade.

## Moving the stop to breakeven

Move the stop to the entry price once the open profit reaches 1R, one times the initial risk.
From then on the trade cannot lose more than its costs. Add the fees to the breakeven level,
so that a stopped trade really ends flat. Moving to breakeven earlier, for example at 0.5R,
turns many trades that would have worked into scratches; our tests of trend entries showed the
best results with the move at 1R or later.

## Partial profits

Take half of the position off at 2R and let the rest run with a trailing stop. The partial
exit lowers the variance of the results and makes losing streaks easier to sit through, at the
price of a smaller average winner. For mean reversion trades take the partial at the first
target, usually the middle of the range.

## Scaling out versus all in, all out

A single exit is simpler to test and usually has the higher expectancy. Scaling out has a
lower expectancy but a smoother equity curve. Choose one approach per system and write it
into the system's rules.

## Never widen a stop

A stop may move only in the direction of the trade. Widening a stop to avoid a loss turns a
planned small loss into an unplanned large one, and it is the most common way disciplined
traders blow up.
""",
        ),
        (
            "Chapter 6: Perpetual Futures: Leverage, Funding and Open Interest",
            """
Perpetual futures have no expiry. A funding payment between longs and shorts keeps their price
close to the spot index instead. On most exchanges funding settles every 8 hours, at 00:00,
08:00 and 16:00 UTC. When the funding rate is positive, longs pay shorts; when it is negative,
shorts pay longs. The payment equals the position size times the mark price times the rate.

## Funding as a cost

A funding rate of 0.01 percent per 8 hours costs a long about 11 percent a year on its
notional value. In euphoric markets rates of 0.1 percent per 8 hours appear, over 100 percent
a year. A backtest that ignores funding overstates long returns in bull markets. Record the
funding actually paid for every trade.

## Funding as a signal

Extreme funding shows crowding. When funding has been above 0.05 percent per 8 hours for three
settlements in a row, longs are crowded: do not open new longs, and tighten the stops of open
ones. When funding is below minus 0.03 percent, shorts are crowded and a squeeze upward
becomes more likely.

## Reading open interest

Open interest is the number of contracts open. Rising price with rising open interest means
new positions are being opened in the direction of the move, which supports a trend. Rising
price with falling open interest is mostly short covering and tends to fade. A drop of more
than 10 percent in open interest within one hour marks a liquidation cascade; wait for it to
end before entering. Open interest is published with a delay, so use only values whose
timestamp is at or before the decision time.

## Leverage and liquidation

Leverage does not change the risk of a trade; the stop does. Choose the leverage so that the
liquidation price is at least three times farther away than the stop, and use isolated margin
so that one position cannot drain the account. Exchanges liquidate on the mark price, not the
last traded price, so compute the distance from the mark price.
""",
        ),
        (
            "Chapter 7: Portfolio Heat and Correlation",
            """
Position sizing rules treat each trade on its own, but the account feels all of them at once.
Portfolio heat is the total amount that would be lost if every open position hit its stop at
the same time.

## The heat cap

Keep the total open risk below 5 percent of equity. When a new signal would push heat above the
cap, take it with a reduced size or skip it. Heat falls as stops are moved to breakeven, which
frees room for new trades.

## Correlated markets count as one

Crypto markets move together. BTC and ETH have had a correlation of daily returns around 0.8
for years, and most altcoins follow them. Treat two positions in the same direction in markets
with a 60-day correlation above 0.7 as one position for the heat cap, and hold at most two
such positions at a time. A long in BTC and a long in ETH is one bet on crypto, not two bets.

## Long and short books

A short position in a correlated market offsets some of the risk of a long, but the hedge fails
in a crash when correlations rise toward one. Do not count on offsets to open more risk.

## Weekend exposure

Liquidity thins out on weekends and gaps after news are larger. Halve new position sizes from
Friday 20:00 UTC to Sunday 20:00 UTC, or hold no new positions over the weekend at all.
""",
        ),
        (
            "Chapter 8: A Pre-Trade Checklist",
            """
Before every order, automated or manual, the following questions must all be answered with
yes. An automated system answers them in code, and logs the answers with the order.

- Is the signal computed only from closed bars and data published before the decision time?
- Is the position size computed from equity before the fill, the stop distance and the costs?
- Is the quantity rounded down to the lot step and above the minimum order size?
- Is the total portfolio heat below 5 percent of equity after this trade?
- Is the daily loss still above the 3 percent limit and the drawdown below the current step?
- Is the liquidation price at least three times farther away than the stop?
- Is the funding rate outside the crowded zone for this direction?
- Is the order identified by a unique client id, so that a retry cannot double it?

A checklist does not make a bad system good. It keeps a good system from being destroyed by
the mistakes that have nothing to do with its edge: a stale feed, a wrong size, a duplicated
order or a trade that should never have been allowed.
""",
        ),
    ),
)

BOOKS: tuple[BookSpec, ...] = (TREND_BOOK, MEAN_REVERSION_BOOK, RISK_BOOK)

NOTE_FILE_NAME = "volatility_squeeze_breakout.md"
NOTE_MARKDOWN = """# Volatility Squeeze Breakout

A research note from the sample corpus. Original text; the rules are illustrations for testing
software, not trading advice.

Quiet markets do not stay quiet. After a period of unusually low volatility, price often breaks
out with force. The squeeze setup waits for the quiet period and trades the first strong move
out of it, in the direction of the higher-timeframe trend.

## The setup

The market is in a squeeze when the Bollinger bands (20 periods, 2 standard deviations) lie
entirely inside the Keltner channel (20-period EMA, 1.5 times the 20-period ATR). A stricter
version also asks for the Bollinger bandwidth to be at its lowest value of the last 120 bars.
The squeeze must last at least 6 consecutive bars on the 1-hour chart.

## The entry

Enter long when, after a squeeze, a 1-hour bar closes above the upper Bollinger band and its
volume is at least 1.5 times the 20-bar average volume, while the last closed 4-hour bar is
above its 50 EMA. Enter short in the mirror case. Decide at the close and fill at the next open.

## Stops and exits

- Initial stop: the middle band at entry, or 1.5 ATR from the entry, whichever is closer.
- Trailing exit: close the trade when a bar closes below the lowest low of the last 10 bars.
- Time stop: if the trade has not gained 1R within 12 bars, close it.

## Filters

Skip squeezes that fire within one hour after a funding settlement at 00:00, 08:00 or 16:00
UTC, and skip signals on weekends when volume is thin. When the funding rate is above 0.05
percent per 8 hours, take only short breakouts.

## Notes from testing

Most squeeze breakouts that work do so within the first three bars. A breakout bar with low
volume fails about twice as often as one with high volume. The setup trades roughly twice a
month per market on the 1-hour chart.
"""


if __name__ == "__main__":
    raise SystemExit(main())
