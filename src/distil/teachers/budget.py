"""Spending caps for a paid teacher: requests, tokens and cost, checked before each request.

    spend = Spend(BudgetSection(max_requests=1000, max_cost=5.0), PriceSection(input_per_million=2.5))
    spend.reserve(estimated_tokens)     # raises BudgetExhaustedError before a cap is passed
    ...                                 # send the request
    spend.settle(estimated_tokens, usage)

Caps and prices are the recipe's `teacher.api.budget` and `teacher.api.price` sections
(`distil.recipe.api`), which hold their defaults. A reservation counts the request and its
worst-case tokens before it is sent, so requests in flight can never carry the total past a
cap. `Spend.already` seeds the counters with what earlier runs spent (from the request
journal), so a rerun gets no fresh allowance; `Spend.restate` words a cap's error with the
totals reached once the requests in flight have finished; `Spend.ledger` (the journal's
`record_attempt`) records each billed attempt before it is sent, so what a run spends on
probes, on retries and on requests that never finished counts in the next run too.
"""

from collections.abc import Callable
from dataclasses import dataclass

from distil.recipe.api import BudgetSection, PriceSection
from distil.teachers.base import TeacherError, Usage


class BudgetExhaustedError(TeacherError):
    """A budget cap would be passed by the next request; what was done is kept.

    `cap` names it (`max_requests`, `max_tokens` or `max_cost`), so that `Spend.restate`
    can say it again with the totals reached once the requests in flight have finished."""

    def __init__(self, message: str, cap: str = "") -> None:
        super().__init__(message)
        self.cap = cap


def cost_at(price: PriceSection, prompt_tokens: float, completion_tokens: float) -> float:
    """Cost of that many prompt and completion tokens at `price`."""
    return (prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million) / 1e6


def priced(price: PriceSection) -> bool:
    """Whether the recipe gives a price (all zero: unknown or free)."""
    return price.input_per_million > 0 or price.output_per_million > 0


@dataclass
class Spent:
    """Requests sent (retries included) and tokens the server reported."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Spend:
    """Running totals against a budget; reserve before sending, settle after."""

    def __init__(
        self,
        budget: BudgetSection | None = None,
        price: PriceSection | None = None,
        already: Spent | None = None,
        where: str = "teacher.api.budget",
        ledger: Callable[[str], None] | None = None,
    ) -> None:
        self.budget = budget if budget is not None else BudgetSection()
        self.price = price if price is not None else PriceSection()
        self.where = where
        self.ledger = ledger
        """Called with a label (the request's key, or `probe`) before each billed attempt is
        sent; it must have recorded the attempt durably when it returns."""
        self.spent = Spent(**vars(already)) if already is not None else Spent()  # a copy
        self._reserved_requests = 0
        self._reserved_prompt = 0.0
        self._reserved_completion = 0.0

    def reserve(self, prompt_tokens: float, completion_tokens: float) -> None:
        """Count one request with its worst-case tokens, or raise if a cap would be passed."""
        b = self.budget
        requests = self.spent.requests + self._reserved_requests + 1
        prompt = self.spent.prompt_tokens + self._reserved_prompt + prompt_tokens
        completion = self.spent.completion_tokens + self._reserved_completion + completion_tokens
        if b.max_requests is not None and requests > b.max_requests:
            raise self.exhausted("max_requests")
        if b.max_tokens is not None and prompt + completion > b.max_tokens:
            raise self.exhausted("max_tokens")
        if b.max_cost is not None and cost_at(self.price, prompt, completion) > b.max_cost:
            raise self.exhausted("max_cost")
        self._reserved_requests += 1
        self._reserved_prompt += prompt_tokens
        self._reserved_completion += completion_tokens

    def sending(self, label: str) -> None:
        """A reserved attempt is about to go out: record it in the ledger first."""
        if self.ledger is not None:
            self.ledger(label)

    def settle(self, prompt_tokens: float, completion_tokens: float, usage: Usage | None) -> None:
        """Replace a reservation by what the request really used (None: nothing billed)."""
        self.release(prompt_tokens, completion_tokens)
        self.spent.requests += 1
        if usage is not None:
            self.spent.prompt_tokens += usage.prompt_tokens
            self.spent.completion_tokens += usage.completion_tokens

    def release(self, prompt_tokens: float, completion_tokens: float) -> None:
        """Drop a reservation for a request that was never sent."""
        self._reserved_requests -= 1
        self._reserved_prompt -= prompt_tokens
        self._reserved_completion -= completion_tokens

    @property
    def cost(self) -> float:
        return cost_at(self.price, self.spent.prompt_tokens, self.spent.completion_tokens)

    def exhausted(self, cap: str) -> BudgetExhaustedError:
        """The error for reaching `cap`, with what has been spent so far (settled requests:
        those still in flight when it is raised are not counted yet, see `restate`)."""
        so_far = {
            "max_requests": f"{self.spent.requests} requests sent",
            "max_tokens": f"{self.spent.tokens} tokens used",
            "max_cost": f"{self.cost:.4f} {self.price.currency} spent",
        }[cap]
        return BudgetExhaustedError(
            f"budget cap reached ({self.where}.{cap}={getattr(self.budget, cap)}; {so_far}); what "
            "was done is kept: raise the cap in the recipe and rerun to continue without paying "
            "twice",
            cap,
        )

    def restate(self, err: BudgetExhaustedError) -> BudgetExhaustedError:
        """`err` again with the totals as they stand now: call it once the requests that were
        in flight when the cap was reached have finished, so the count is every request sent."""
        return self.exhausted(err.cap) if err.cap else err
