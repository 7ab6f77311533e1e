"""Code-mixed questions (reference §2.4) and their alignment to the teacher's English question (§2.5, "B").

Per example, once: a `CodeMixPlan` with the target-language words of the `{lang}-en` alignment, the replaceable
candidates and how many to replace. The reference's candidate filter, followed exactly:
- the entry is aligned (`[tgt, en, en_idx]`, length >= 3);
- its English word `english_words(en)[int(en_idx)]` is aligned from exactly one target word (counted by string over
  all aligned entries of the question);
- the *English* word is split identically by both tokenizers (`teacher.tokenize(w) == student.tokenize(w)`), so the
  replaced word can be found again by whole-word string match in alignment B.
`n = min(max(1, round(0.15 * |student pieces of the question|)), |candidates|)` with Python's `round` (banker's
rounding): 15 % of the *subwords*, not of the words as the paper says. Both are options (`kd.codemix_rate`,
`kd.codemix_unit`): `unit="words"` counts the target-language words of the alignment entries (the plan's `words`)
instead of the student's pieces; the defaults (0.15, "subwords") are the release's.

Per draw: shuffle the candidates, replace the first n (in sentence order) by ` {en_word} ` where `en_word` is the
alignment *entry's own* English word (`run_vqa_student.py:560-566` @98f288b), which differs from the NLTK token used
by the filter when the alignment file disagrees with NLTK's tokenisation; join the words with `''`
(ja) or `' '` (hi), strip and collapse one level of double spaces. The reference drew from the global `random` module
in every `__getitem__`; here a draw is a pure function of (seed, epoch, example index) (`draw_rng`), so runs are
reproducible, resumable mid-epoch and identical across DDP ranks and DataLoader workers, and still re-drawn each epoch.
With no candidate (n = 0) the sentence is the alignment words re-joined, as in the reference.
"""

from __future__ import annotations

from cvil.errors import CvilError

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cvil.data.tokenizers import tokenize_batch
from cvil.data.text import english_words

CODEMIX_RATE = 0.15  # the release's share (of subwords); the paper's share of words with unit="words"
CODEMIX_UNITS = ("subwords", "words")


class _Joiners:
    """`JOINERS[lang]`: the language file's `codemix_joiner` ('' for ja, ' ' for hi; `cvil.languages`), read from
    the registry, so a new language needs no entry here; an unknown code is a did-you-mean error."""

    def __getitem__(self, lang: str) -> str:
        from cvil.languages import get_language

        return get_language(lang).codemix_joiner

    def __contains__(self, lang: object) -> bool:
        from cvil.languages import codes

        return lang in codes()


JOINERS = _Joiners()


class AlignmentFieldError(CvilError, ValueError):
    """A row lacks (or has a malformed) `{lang}-en` alignment field needed for code-mixing."""


@dataclass(frozen=True)
class CodeMixPlan:
    """Everything a draw needs: target words, candidates `(word index, the entry's English word)` and the count n."""

    words: tuple[str, ...]
    candidates: tuple[tuple[int, str], ...]
    n: int
    joiner: str


def draw_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The RNG of one draw. A string seed is hashed with SHA-512 by `random`, independent of PYTHONHASHSEED."""
    return random.Random(f"cvil-codemix:{seed}:{epoch}:{index}")


def draw(plan: CodeMixPlan, rng: random.Random) -> str:
    """One code-mixed sentence (the reference's shuffle, take n, replace in sentence order)."""
    return mix(plan.words, plan.candidates, plan.n, plan.joiner, rng)


def mix(words: Sequence[str], candidates: Sequence[tuple[int, str]], n: int, joiner: str, rng: random.Random) -> str:
    """`draw` on a plan's parts (the columnar plans of `VQADataset` keep no `CodeMixPlan` objects).

    `random.shuffle` draws depend only on the list's length, so shuffling candidate positions picks the same
    candidates as shuffling the candidates themselves.
    """
    order = list(range(len(candidates)))
    rng.shuffle(order)
    words = list(words)
    for i, en_word in sorted(candidates[c] for c in order[:n]):
        words[i] = f" {en_word} "
    return joiner.join(words).strip().replace("  ", " ")


def whole_words(pieces: Sequence[str]) -> list[tuple[int, int, str]]:
    """Group WordPiece pieces into words: `(start, n_pieces, merged)`, merged keeping the `##` markers."""
    words: list[tuple[int, int, str]] = []
    for i, piece in enumerate(pieces):
        if piece.startswith("##") and words:
            start, n, merged = words[-1]
            words[-1] = (start, n + 1, merged + piece)
        else:
            words.append((i, 1, piece))
    return words


def codemix_alignment(student_question: Sequence[str], teacher_question: Sequence[str]) -> list[tuple[int, int]]:
    """Alignment B: `(student_pos, teacher_pos)` text positions (+1 for `[CLS]`) of whole words equal in both.

    Both arguments are the question pieces only. The last English occurrence of a word wins. Because the match is
    plain string identity, words that were not replaced but occur in both questions also match (digits, Latin
    words, the ASCII `?` of Hindi questions), exactly as in the reference.
    """
    english = {merged: start for start, _, merged in whole_words(teacher_question)}
    pairs = []
    for start, n, merged in whole_words(student_question):
        t_start = english.get(merged)
        if t_start is not None:
            pairs.extend((start + k + 1, t_start + k + 1) for k in range(n))
    return pairs


class CodeMixer:
    """Builds `CodeMixPlan`s for one language and tokenizer pair, memoising the same-tokenisation test per word."""

    def __init__(self, teacher_tokenizer, student_tokenizer, lang: str, *, rate: float = CODEMIX_RATE,
                 unit: str = "subwords") -> None:
        try:
            self.joiner = JOINERS[lang]
        except ValueError as exc:  # an unknown language: one line with the closest codes
            raise type(exc)(f"code-mixing is defined for the languages of the language files: {exc}") from None
        if not 0 < rate <= 1:
            raise ValueError(f"the code-mix rate must be in (0, 1], not {rate!r}")
        if unit not in CODEMIX_UNITS:
            raise ValueError(f"the code-mix unit must be one of {CODEMIX_UNITS}, not {unit!r}")
        self.teacher, self.student, self.lang = teacher_tokenizer, student_tokenizer, lang
        self.rate, self.unit = rate, unit
        self._same: dict[str, bool] = {}

    def same_tokenization(self, words: Sequence[str]) -> list[bool]:
        """Whether each word is split identically by both tokenizers (batched for the unseen words)."""
        new = [w for w in dict.fromkeys(words) if w not in self._same]
        if new:
            for w, (tp, _), (sp, _) in zip(new, tokenize_batch(self.teacher, new), tokenize_batch(self.student, new)):
                self._same[w] = tp == sp
        return [self._same[w] for w in words]

    def plan(self, entries: list | None, english: str, n_question_pieces: int, q_id: object) -> CodeMixPlan:
        """The plan of one example; `n_question_pieces` = `len(student.tokenize(question))` (untruncated; unused
        with `unit="words"`)."""
        return self.plan_many([entries], [english], [n_question_pieces], [q_id])[0]

    def plan_many(
        self,
        entries: Sequence[list | None],
        english: Sequence[str],
        n_question_pieces: Sequence[int],
        q_ids: Sequence[object],
    ) -> list[CodeMixPlan]:
        """Plans for many examples; the tokenizer test runs once, batched, over all distinct English words."""
        aligned = [_aligned_words(e, en, self.lang, q) for e, en, q in zip(entries, english, q_ids)]
        self.same_tokenization([w for row in aligned for _, w, _ in row])
        plans = []
        for e, row, n_pieces in zip(entries, aligned, n_question_pieces):
            freq = Counter(w for _, w, _ in row)  # the filter looks at the NLTK word, the draw writes the entry's
            cands = tuple((i, entry_word) for i, w, entry_word in row if freq[w] == 1 and self._same[w])
            words = tuple(str(entry[0]) for entry in e)
            n = min(max(1, round(self.rate * (n_pieces if self.unit == "subwords" else len(words)))), len(cands))
            plans.append(CodeMixPlan(words, cands, n, self.joiner))
        return plans


def _aligned_words(entries: list | None, english: str, lang: str, q_id: object) -> list[tuple[int, str, str]]:
    """`(word index, NLTK English word at en_idx, the entry's own English word)` of the aligned entries; clear
    errors for missing or malformed fields."""
    if entries is None:
        raise AlignmentFieldError(f"question {q_id} has no '{lang}-en' alignment field, needed for code-mixing")
    tokens = english_words(english)
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, (list, tuple)) or len(entry) == 0:
            raise AlignmentFieldError(f"question {q_id}: '{lang}-en' entry {i} is {entry!r}, not [word, ...]")
        if len(entry) >= 3:
            try:
                idx = int(entry[2])
            except (TypeError, ValueError):
                idx = -1
            if not 0 <= idx < len(tokens):
                raise AlignmentFieldError(
                    f"question {q_id}: '{lang}-en' entry {i} {entry!r} has an en_idx outside the "
                    f"{len(tokens)} English words {list(tokens)}"
                )
            out.append((i, tokens[idx], str(entry[1])))
    return out
