"""Fact families: answers only a model's weights can hold (capitals, element symbols).

    capital   What is the capital of Kenya?      -> Nairobi
    element   Chemical symbol for iron?          -> Fe

Each fact is asked in one of twelve phrasings. The split is over (fact, phrasing) pairs:
fact number i in phrasing j is held out when (i + j) % 4 == 0, so every fact is asked in
nine training phrasings and three held-out ones, and every phrasing is seen in training
with three quarters of the facts. A student that only learns from its teacher's answers to
training prompts therefore meets every fact, and is tested on wordings it never saw for it.
"""

import random
import re

from distil.errors import TaskError
from distil.tasks import Split, Task, TaskItem, register
from distil.tasks.splitting import normalise

PHRASINGS_PER_HELD_OUT = 4
"""Fact i in phrasing j is held out when (i + j) % PHRASINGS_PER_HELD_OUT == 0."""

# fmt: off
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Greece": "Athens", "Ireland": "Dublin", "Austria": "Vienna",
    "Poland": "Warsaw", "Hungary": "Budapest", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Russia": "Moscow", "Ukraine": "Kyiv",
    "Turkey": "Ankara", "Egypt": "Cairo", "Kenya": "Nairobi", "Nigeria": "Abuja",
    "Ghana": "Accra", "Morocco": "Rabat", "Japan": "Tokyo", "China": "Beijing",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta", "Iran": "Tehran",
    "Iraq": "Baghdad", "Lebanon": "Beirut", "Nepal": "Kathmandu", "Canada": "Ottawa",
    "Cuba": "Havana", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota",
    "Venezuela": "Caracas", "Ecuador": "Quito", "Australia": "Canberra", "Belgium": "Brussels",
    "Netherlands": "Amsterdam", "Switzerland": "Bern", "Czechia": "Prague",
    "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb",
    "Iceland": "Reykjavik",
}

ELEMENTS = {
    "hydrogen": "H", "helium": "He", "lithium": "Li", "beryllium": "Be", "boron": "B",
    "carbon": "C", "nitrogen": "N", "oxygen": "O", "fluorine": "F", "neon": "Ne",
    "sodium": "Na", "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "phosphorus": "P",
    "sulfur": "S", "chlorine": "Cl", "argon": "Ar", "potassium": "K", "calcium": "Ca",
    "titanium": "Ti", "chromium": "Cr", "manganese": "Mn", "iron": "Fe", "cobalt": "Co",
    "nickel": "Ni", "copper": "Cu", "zinc": "Zn", "gallium": "Ga", "arsenic": "As",
    "selenium": "Se", "bromine": "Br", "krypton": "Kr", "rubidium": "Rb", "strontium": "Sr",
    "silver": "Ag", "tin": "Sn", "iodine": "I", "xenon": "Xe", "barium": "Ba",
    "tungsten": "W", "platinum": "Pt", "gold": "Au", "mercury": "Hg", "lead": "Pb",
    "radon": "Rn", "uranium": "U", "plutonium": "Pu",
}

CAPITAL_PHRASINGS = (
    "What is the capital of {x}?", "Capital of {x}?", "Name the capital of {x}.",
    "Which city is the capital of {x}?", "{x}: capital?", "Tell me the capital of {x}.",
    "The capital of {x} is?", "What city is the capital of {x}?", "Give the capital of {x}.",
    "Capital city of {x}?", "{x} has which capital?", "What's the capital of {x}?",
)

ELEMENT_PHRASINGS = (
    "What is the symbol of {x}?", "Symbol of {x}?", "Chemical symbol for {x}?",
    "Give the symbol of {x}.", "{x}: symbol?", "Which symbol stands for {x}?",
    "Name the symbol of {x}.", "What is {x}'s symbol?", "Element symbol of {x}?",
    "Tell me the symbol for {x}.", "The symbol of {x} is?", "Write the chemical symbol of {x}.",
)
# fmt: on


def fact_is_held_out(fact_index: int, phrasing_index: int) -> bool:
    """Whether fact `fact_index` asked in phrasing `phrasing_index` is a held-out prompt."""
    return (fact_index + phrasing_index) % PHRASINGS_PER_HELD_OUT == 0


def _patterns(phrasings: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(re.escape(p).replace(re.escape("{x}"), "(?P<x>.+?)")) for p in phrasings]


class FactFamily:
    """A table of facts asked in fixed phrasings; makes items and grades responses."""

    def __init__(self, name: str, table: dict[str, str], phrasings: tuple[str, ...]) -> None:
        self.name, self.table, self.phrasings = name, table, phrasings
        self.subjects = list(table)
        self.patterns = _patterns(phrasings)

    def held_out(self, fact_index: int, phrasing_index: int) -> bool:
        """Whether fact `fact_index` asked in phrasing `phrasing_index` is a held-out prompt."""
        return fact_is_held_out(fact_index, phrasing_index)

    def size(self, split: Split) -> int:
        """How many (fact, phrasing) pairs, so distinct prompts, `split` holds."""
        return sum(
            self.held_out(i, j) == (split == "heldout")
            for i in range(len(self.subjects))
            for j in range(len(self.phrasings))
        )

    def make(self, rng: random.Random, split: Split) -> TaskItem:
        """A random fact in a random phrasing of `split` (a fact with no phrasing in `split`
        is drawn again)."""
        allowed: list[int] = []
        while not allowed:
            fact = rng.randrange(len(self.subjects))
            allowed = [
                j for j in range(len(self.phrasings)) if self.held_out(fact, j) == (split == "heldout")
            ]
        phrasing = self.phrasings[rng.choice(allowed)]
        subject = self.subjects[fact]
        return TaskItem(self.name, phrasing.format(x=subject), self.table[subject])

    def subject_of(self, prompt: str) -> str:
        """The table key that `prompt` asks about."""
        return self.parse(prompt)[0]

    def parse(self, prompt: str) -> tuple[str, int]:
        """The table key that `prompt` asks about and the number of its phrasing."""
        for number, pattern in enumerate(self.patterns):
            match = pattern.fullmatch(prompt.strip())
            if match and match.group("x") in self.table:
                return match.group("x"), number
        raise TaskError(
            f"{prompt!r} is not a {self.name} prompt; grade each response with the "
            "task that generated its prompt"
        )

    def check(self, prompt: str, response: str) -> bool:
        """Whether the response is exactly the fact asked for (whitespace aside)."""
        return normalise(response) == self.table[self.subject_of(prompt)]


def _family(name: str, description: str, table: dict[str, str], phrasings: tuple[str, ...]) -> FactFamily:
    family = FactFamily(name, table, phrasings)
    register(Task(name, description, family.make, family.check, size=family.size))
    return family


CAPITAL = _family("capital", "name the capital of one of 48 countries", CAPITALS, CAPITAL_PHRASINGS)
ELEMENT = _family("element", "give the chemical symbol of one of 48 elements", ELEMENTS, ELEMENT_PHRASINGS)
