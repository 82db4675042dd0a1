"""Instruct families: short questions that a small general chat model answers in a sentence.

    plural         What is the plural of 'mouse'?                  -> mice
    past_tense     What is the past tense of 'go'?                 -> went
    opposite       What is the opposite of 'cheap'?                -> expensive
    capital_city   What is the capital city of Kenya?              -> Nairobi
    language       What language is spoken in Brazil?              -> Portuguese
    continent      Which continent is Peru in?                     -> South America
    occupation     What do you call a person who bakes bread ...?  -> baker
    first_letter   What is the first letter of the word 'tiger'?   -> T
    number_digits  Write 'seventy-six' as a number.                -> 76

The demo families grade the exact answer; a general instruct model (SmolLM2-135M-Instruct)
answers "The plural of 'mouse' is 'mice'." and scores zero there. These families grade what
the response *names* (`distil.tasks.answers`): it must name a right answer and no wrong one,
where the wrong ones are every other answer the family knows plus the usual mistakes ("mouses",
"goed", "gone"); a word the prompt itself names never counts ("The opposite of hot is cold").
`first_letter` counts the single letters a response names, `number_digits` the numbers it
writes in digits; either passes only if that is the answer alone. So a response that lists
candidates fails, and so does one that never answers. The tables are in `distil.tasks.lexicon`.

The split. `first_letter` and `number_digits` split on the word or number (one in five held
out, `distil.tasks.splitting`): a held-out prompt asks about one never asked in training. The
others are facts split as `distil.tasks.facts`: fact i in phrasing j is held out when
(i + j) % 4 == 0, so every fact is taught and held-out prompts ask it in other words.

Opt-in (not in `all`, so the demo's prompts and figures do not move), and one group: a recipe
names them all as `instruct` (`tasks: [instruct]`).
"""

from collections.abc import Callable

from distil.tasks import Task, lexicon, register
from distil.tasks.answers import letters_only, named, names_only, number_only
from distil.tasks.facts import FactFamily
from distil.tasks.splitting import is_held_out

GROUP = "instruct"
"""The group name a recipe uses for every family of this module."""

WrongForms = Callable[[str, tuple[str, ...]], set[str]]
"""(subject, accepted answers) -> answers that are wrong for that subject in particular."""


class InstructFamily(FactFamily):
    """A table asked in fixed phrasings; the response is graded by what it names.

    `table` maps a subject to its answers, "|"-separated, the first the reference. Split as
    the fact families, or with `split_items` by subject alone."""

    def __init__(
        self, name: str, table: dict[str, str], phrasings: tuple[str, ...], split_items: bool = False
    ) -> None:
        super().__init__(name, {s: a.split("|")[0] for s, a in table.items()}, phrasings)
        self.accepted = {s: tuple(a.split("|")) for s, a in table.items()}
        self.split_items = split_items

    def held_out(self, fact_index: int, phrasing_index: int) -> bool:
        """With `split_items`, whether the subject is held out, in every phrasing."""
        if self.split_items:
            return is_held_out(f"{self.name}:{self.subjects[fact_index]}")
        return super().held_out(fact_index, phrasing_index)

    def check(self, prompt: str, response: str) -> bool:
        subject = self.subject_of(prompt)
        return self.grade(subject, prompt, response)

    def grade(self, subject: str, prompt: str, response: str) -> bool:
        """Whether `response` answers the question about `subject` that `prompt` asks."""
        raise NotImplementedError


class NamedAnswerFamily(InstructFamily):
    """Right when the response names an accepted answer and no wrong one: any other answer
    in `vocabulary` or in `wrong_forms(subject, accepted)`, unless the prompt names it."""

    def __init__(
        self,
        name: str,
        table: dict[str, str],
        phrasings: tuple[str, ...],
        vocabulary: set[str],
        wrong_forms: WrongForms | None = None,
    ) -> None:
        super().__init__(name, table, phrasings)
        self.vocabulary = vocabulary | {a for answers in self.accepted.values() for a in answers}
        self.wrong_forms = wrong_forms

    def grade(self, subject: str, prompt: str, response: str) -> bool:
        accepted = self.accepted[subject]
        wrong = self.vocabulary | (self.wrong_forms(subject, accepted) if self.wrong_forms else set())
        return names_only(response, accepted, wrong - set(named(prompt, wrong)))


class FirstLetterFamily(InstructFamily):
    """Right when the only single letter the response names is the answer."""

    def grade(self, subject: str, prompt: str, response: str) -> bool:
        return letters_only(response, self.table[subject])


class DigitsFamily(InstructFamily):
    """Right when the only number the response writes in digits is the answer."""

    def grade(self, subject: str, prompt: str, response: str) -> bool:
        return number_only(response, int(self.table[subject]))


def plural_mistakes(singular: str, accepted: tuple[str, ...]) -> set[str]:
    """Regular endings put where they do not belong: "mouses", "mices", "childrens"."""
    return {form + ending for form in (singular, *accepted) for ending in ("s", "es")}


def past_tense_mistakes(verb: str, accepted: tuple[str, ...]) -> set[str]:
    """A regular ending on an irregular verb ("goed"), and its past participle ("gone")."""
    participle = lexicon.PAST_PARTICIPLES.get(verb)
    return {verb + "ed", verb + "d", *([participle] if participle else [])}


def _register(family: InstructFamily, description: str) -> InstructFamily:
    register(
        Task(family.name, description, family.make, family.check, opt_in=True, group=GROUP, size=family.size)
    )
    return family


PLURAL = _register(
    NamedAnswerFamily(
        "plural",
        lexicon.PLURALS,
        (
            "What is the plural of '{x}'?",
            "What is the plural form of the word {x}?",
            "Give the plural of {x}.",
            "What is the plural of the word '{x}'?",
            "What is the plural form of '{x}'?",
        ),
        set(lexicon.PLURALS.values()),
        plural_mistakes,
    ),
    f"the plural of one of {len(lexicon.PLURALS)} nouns, regular and irregular",
)
PAST_TENSE = _register(
    NamedAnswerFamily(
        "past_tense",
        lexicon.PAST_TENSES,
        (
            "What is the past tense of '{x}'?",
            "What is the past tense of the verb {x}?",
            "What is the past tense of the word '{x}'?",
            "What is the simple past of '{x}'?",
        ),
        set(lexicon.PAST_TENSES.values()),
        past_tense_mistakes,
    ),
    f"the simple past of one of {len(lexicon.PAST_TENSES)} verbs, regular and irregular",
)
OPPOSITE = _register(
    NamedAnswerFamily(
        "opposite",
        lexicon.OPPOSITES,
        (
            "What is the opposite of '{x}'?",
            "What is the opposite of {x}?",
            "Give a word that means the opposite of {x}.",
            "What is the opposite of the word '{x}'?",
            "What word means the opposite of '{x}'?",
            "Name the opposite of '{x}'.",
        ),
        set(lexicon.OPPOSITES),
    ),
    f"the opposite of one of {len(lexicon.OPPOSITES)} common words",
)
CAPITAL_CITY = _register(
    NamedAnswerFamily(
        "capital_city",
        lexicon.CAPITAL_CITIES,
        (
            "What is the capital city of {x}?",
            "What is the name of the capital of {x}?",
            "Which city serves as the capital of {x}?",
            "Tell me the name of the capital city of {x}.",
            "Which city is the capital city of {x}?",
            "Name the capital city of {x}.",
        ),
        set(lexicon.NOT_CAPITALS),
    ),
    f"the capital of one of {len(lexicon.CAPITAL_CITIES)} well-known countries",
)
LANGUAGE = _register(
    NamedAnswerFamily(
        "language",
        lexicon.LANGUAGES,
        (
            "What language is spoken in {x}?",
            "What is the main language of {x}?",
            "Which language do people in {x} speak?",
            "What language do most people in {x} speak?",
            "Which language is mainly spoken in {x}?",
            "What is the most widely spoken language in {x}?",
        ),
        set(),
    ),
    f"the main language of one of {len(lexicon.LANGUAGES)} countries",
)
CONTINENT = _register(
    NamedAnswerFamily(
        "continent",
        lexicon.CONTINENTS,
        (
            "Which continent is {x} in?",
            "On which continent is {x}?",
            "What continent is {x} located in?",
            "Tell me which continent {x} is on.",
            "Which continent does {x} belong to?",
        ),
        set(lexicon.CONTINENT_NAMES),
    ),
    f"the continent of one of {len(lexicon.CONTINENTS)} countries",
)
OCCUPATION = _register(
    NamedAnswerFamily(
        "occupation",
        lexicon.OCCUPATIONS,
        (
            "What do you call a person who {x}?",
            "What is the name for a person who {x}?",
            "What is a person who {x} called?",
            "What job does a person who {x} have?",
            "What do we call someone who {x}?",
            "Someone who {x} is called what?",
        ),
        set(),
    ),
    f"the name of one of {len(lexicon.OCCUPATIONS)} occupations from what the person does",
)
FIRST_LETTER = _register(
    FirstLetterFamily(
        "first_letter",
        {w: w[0].upper() for w in lexicon.FIRST_LETTER_WORDS},
        (
            "What is the first letter of the word '{x}'?",
            "Which letter does the word '{x}' start with?",
            "What letter does the word '{x}' begin with?",
            "What is the first letter of '{x}'?",
        ),
        split_items=True,
    ),
    f"the first letter of one of {len(lexicon.FIRST_LETTER_WORDS)} common words",
)
NUMBER_DIGITS = _register(
    DigitsFamily(
        "number_digits",
        {lexicon.number_in_words(n): str(n) for n in range(100)},
        (
            "Write '{x}' as a number.",
            "Write the number {x} in digits.",
            "What is {x} written as a number?",
            "Write '{x}' in digits.",
        ),
        split_items=True,
    ),
    "write a number from zero to ninety-nine, given in words, in digits",
)
