"""Mixed precision: keep the fewest MACs in float such that the quality budget holds.

Groups are ranked by harm per share of MACs (from the sensitivity table): keeping a group in
float costs its MACs and buys back its harm, so the cheapest harm-per-MAC groups go first. A
binary search finds the shortest prefix of that ranking that meets the budget on the held-out
probes; then each float group, largest first, is tried back in INT8 and stays there if the
budget still holds.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from speedy.console import console
from speedy.quality import Budget
from speedy.quantize.graph import GraphInfo
from speedy.quantize.metrics import unmet
from speedy.quantize.progress import steps
from speedy.quantize.sensitivity import Sensitivity


@dataclass
class Evaluation:
    """One candidate tried by the search: its float groups, their MAC share and quality."""

    float_groups: list[str]
    float_share: float
    scores: dict[str, float | None]
    holds: bool


def ranking(
    sensitivities: Sequence[Sensitivity], rank_by: str, higher_is_better: bool
) -> list[str]:
    """Groups, the best to keep in float first (most harm per share of MACs; unmeasured
    harm first of all)."""
    harms = {s.group: s.harm(rank_by, higher_is_better) for s in sensitivities}
    floor = min((h for h in harms.values() if math.isfinite(h)), default=0.0)

    def priority(s: Sensitivity) -> float:
        return (harms[s.group] - floor) / max(s.mac_share, 1e-9)

    return [s.group for s in sorted(sensitivities, key=priority, reverse=True)]


class Search:
    """Evaluates candidates through `score(float_groups)`, remembering every result."""

    def __init__(
        self,
        info: GraphInfo,
        budgets: Sequence[Budget],
        score: Callable[[list[str]], dict[str, float | None]],
    ) -> None:
        self.info, self.budgets, self.score = info, list(budgets), score
        self.tried: list[Evaluation] = []
        self._advance: Callable[[str], None] = lambda note: None

    def holds(self, float_groups: Sequence[str]) -> bool:
        groups = [g for g in self.info.groups if g in set(float_groups)]
        for done in self.tried:
            if done.float_groups == groups:
                return done.holds
        scores = self.score(groups)
        missed = unmet(self.budgets, scores)
        share = sum(self.info.share(g) for g in groups)
        self.tried.append(Evaluation(groups, share, scores, not missed))
        figures = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if v is not None)
        verdict = "[green]meets the budget[/]" if not missed else "misses " + "; ".join(missed)
        console.print(
            f"  search: {len(groups)} more in float ({share:.1%} of MACs): {figures}: {verdict}"
        )
        self._advance(f"{len(groups)} in float")
        return not missed

    def run(self, order: Sequence[str]) -> list[str] | None:
        """The float groups chosen, or None when even all-float misses the budget."""
        with steps("mixed-precision search", None) as self._advance:
            if self.holds([]):
                return []
            low, high = 0, len(order)
            if not self.holds(order):
                return None
            while high - low > 1:
                middle = (low + high) // 2
                if self.holds(order[:middle]):
                    high = middle
                else:
                    low = middle
            chosen = list(order[:high])
            for group in sorted(chosen, key=self.info.share, reverse=True):
                trial = [g for g in chosen if g != group]
                if self.holds(trial):
                    chosen = trial
        return chosen
