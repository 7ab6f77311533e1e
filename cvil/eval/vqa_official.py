"""VQA accuracy exactly as the official GT-Vision-Lab ``vqaEval.py`` computes it, in its current or its 2016/17 form.

Why reproduce quirks instead of "fixing" them: VQA numbers are only comparable with the paper and the EvalAI server
when every normalisation step matches, including the odd ones. Read from
``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of GT-Vision-Lab/VQA and re-implemented (not copied):

- ``evaluator="current"`` (default): master at commit a013f0043c1e ("Fixed processing answers bug", 2021-03-11).
- ``evaluator="legacy-2017"``: the file as it was from commit 458a8b268b1a (2016-10-08) until a013f00, i.e. the
  version of the VQA v2.0 release (a4f1afd, 2017) that most third-party ports copied. Published numbers of that era
  may have used it.

Both are pinned against the original files (run under Python 2.7 and as a Python 3 copy) by the golden fixture
``tests/eval/data/vqa_official_golden.json`` (``tests/eval/test_vqa_official.py``).

Steps for one question under ``"current"`` (``VQAEval.evaluate``):

1. Every annotator answer and the prediction: ``\\n`` and ``\\t`` become spaces, then ``strip()``.
2. If the (cleaned) annotator answers are all identical, **nothing** else is normalised, on either side (quirk Q1:
   ten annotators answering ``"2"`` do not match the prediction ``"two"``; ten ``"Yes"`` do not match ``"yes"``).
   Otherwise **both** every annotator answer and the prediction go through :func:`process_punctuation` then
   :func:`process_digit_article`.

Under ``"legacy-2017"`` instead: the prediction is always cleaned, punctuation-processed and digit/article-processed;
the annotator answers are never cleaned, and only when the raw strings disagree they go through
:func:`process_punctuation` (never :func:`process_digit_article`), so ten ``"two"`` can never be matched.

3. Leave-one-out (both): for each annotator answer, drop it (the official code drops every answer *dict* equal to it,
   so the comparison includes ``answer_id`` and ``answer_confidence``, quirk Q2 -- identical only for duplicated
   dicts) and score ``min(1, matches_among_the_rest / 3)``; the question's accuracy is the mean over annotators. Two
   matching annotators out of ten give 0.6, not the naive 2/3.
4. Summary: ``round(100 * mean, n)``, ``n = 2``, for overall, per answer type and per question type (the means use
   unrounded per-question values); per-question values (``evalQA``) are ``round(100 * acc, n)``. ``rounding``:
   ``"python3"`` (default; what every Python 3 port gives: half-to-even on the binary value) or ``"python2"`` (the
   file's own interpreter: exact ties such as 18.125 go away from zero, 18.13 instead of 18.12).

:func:`process_punctuation` quirks:

- Q3: the punctuation list has no ``.``, ``'`` or ``:`` (``"don't"`` and ``"2:30"`` keep them).
- Q4: each punctuation mark is *deleted* if it has a space on either side **in the input string**, or if the input
  contains a digit-comma-digit anywhere (``commaStrip``); otherwise it is *replaced by a space*. The tests always look
  at the original input, not the partially processed text. So ``"1,000"`` -> ``"1000"``, ``"red,blue"`` ->
  ``"red blue"``, ``"red, blue"`` -> ``"red blue"`` (comma deleted), ``"t-shirt"`` -> ``"t shirt"``, and with a number
  present every mark is deleted: ``"1,000 t-shirt"`` -> ``"1000 tshirt"``.
- Q5: ``periodStrip`` is ``(?!<=\\d)(\\.)(?!\\d)``; the ``(?!<=\\d)`` was meant as a look-behind but is a
  look-ahead that always succeeds, so the rule is "delete every period not followed by a digit": ``"a.m."`` ->
  ``"am"``, ``"3.5"`` stays, ``"5."`` -> ``"5"``, ``"u.s.a"`` -> ``"usa"``.
- Q6: ``re.UNICODE`` is passed as the positional *count* argument of ``Pattern.sub``, so at most 32 periods are removed.
- ``\\d`` is Python 3's Unicode digit class (the Python 3 port's behaviour); under Python 2 the same pattern matches
  ASCII digits only. Only non-ASCII digits next to a comma or period can tell the two apart.

:func:`process_digit_article` quirks:

- Q7: lower-cases, splits on whitespace (collapsing runs of spaces), maps number words ``none``/``zero`` .. ``ten`` to
  digits, drops the articles ``a``/``an``/``the`` (after the number mapping), then applies the contractions map per
  word. Map keys with capitals (``"Im"``, ``"Ive"``, ``"Id've"``) can never match after lower-casing, and keys with an
  apostrophe can only match when the punctuation step kept it (it always does, Q3).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Answer-normalisation tables of the official evaluator (same content; the layout is ours).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've",
    "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've",
    "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # Q5: the broken look-behind is kept on purpose
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PERIOD_STRIP_COUNT = re.UNICODE.value  # Q6: the official code passes re.UNICODE (32) as `count`
DEFAULT_PRECISION = 2


def process_punctuation(text: str) -> str:
    """Delete or space out punctuation as ``VQAEval.processPunctuation`` does (quirks Q3-Q6)."""
    out = text
    has_number_comma = COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Lower-case, map number words, drop articles, expand contractions (``VQAEval.processDigitArticle``, Q7)."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


#: evaluator name -> the GT-Vision-Lab/VQA commit whose vqaEval.py it reproduces
EVALUATOR_COMMITS: dict[str, str] = {
    "current": "a013f0043c1e2cdc995922dfe257f7149aa9af06",
    "legacy-2017": "458a8b268b1a239dc388e0af4423f3fe7477b04f",
}
EVALUATORS: tuple[str, ...] = tuple(EVALUATOR_COMMITS)
DEFAULT_EVALUATOR = "current"
ROUNDINGS = ("python3", "python2")


def check_evaluator(evaluator: str) -> str:
    """The evaluator name, or ValueError naming the choices."""
    if evaluator not in EVALUATOR_COMMITS:
        raise ValueError(f"unknown VQA evaluator {evaluator!r}; expected one of {', '.join(EVALUATORS)}")
    return evaluator


def evaluator_label(evaluator: str = DEFAULT_EVALUATOR) -> str:
    """What summaries and leaderboards record, e.g. ``vqaEval.py@a013f00 (current)``."""
    return f"vqaEval.py@{EVALUATOR_COMMITS[check_evaluator(evaluator)][:7]} ({evaluator})"


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _full(text: str) -> str:
    return process_digit_article(process_punctuation(text))


def normalize_answers(
    prediction: str, answers: Sequence[str], *, evaluator: str = DEFAULT_EVALUATOR
) -> tuple[str, list[str]]:
    """Prediction and annotator answers as the chosen evaluator compares them (steps 1-2 of the module docstring)."""
    if check_evaluator(evaluator) == "current":
        pred, gts = _clean(prediction), [_clean(a) for a in answers]
        if len(set(gts)) > 1:
            return _full(pred), [_full(a) for a in gts]
        return pred, gts
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    return _full(_clean(prediction)), gts


def _as_answer_dicts(answers: Sequence[Mapping[str, Any] | str]) -> list[dict[str, Any]]:
    """Plain strings become dicts with distinct ids so that leave-one-out drops exactly one of them."""
    return [
        dict(a) if isinstance(a, Mapping) else {"answer": a, "answer_id": i + 1}
        for i, a in enumerate(answers)
    ]


def question_accuracy(
    prediction: str,
    answers: Sequence[Mapping[str, Any] | str],
    *,
    evaluator: str = DEFAULT_EVALUATOR,
    map_answer: Callable[[str], Any] | None = None,
) -> float:
    """Accuracy in [0, 1] of one predicted answer against the raw annotator answers (steps 1-3).

    ``answers`` are the annotation's answer dicts (``answer``, ``answer_id``, ...) or plain strings. ``map_answer``
    (applied after normalisation to the prediction and every annotator answer) lets the same rule score coarser class
    sets, e.g. the merged Hindi classes; ``None`` is the official behaviour.
    """
    dicts = _as_answer_dicts(answers)
    if not dicts:
        raise ValueError("a question needs at least one annotator answer")
    pred, gts = normalize_answers(prediction, [d["answer"] for d in dicts], evaluator=evaluator)
    for d, a in zip(dicts, gts, strict=True):
        d["answer"] = a  # dict equality in the leave-one-out sees the normalised answer, as upstream
    if map_answer is not None:
        pred = map_answer(pred)
        keys = [map_answer(d["answer"]) for d in dicts]
    else:
        keys = [d["answer"] for d in dicts]
    scores = []
    for left_out in dicts:
        matches = sum(1 for d, k in zip(dicts, keys, strict=True) if d != left_out and k == pred)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def official_round(value: float, precision: int = DEFAULT_PRECISION, rounding: str = "python3") -> float:
    """``round(value, n)`` of the official code under Python 3 (half-to-even on the binary value) or Python 2 (exact
    decimal value, ties away from zero)."""
    if rounding == "python3":
        return round(value, precision)
    if rounding == "python2":
        quantum = Decimal(1).scaleb(-precision)
        return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))
    raise ValueError(f"unknown rounding {rounding!r}; expected one of {', '.join(ROUNDINGS)}")


@dataclass
class VQAAccuracy:
    """The official ``accuracy`` dict plus the unrounded per-question accuracies (fractions in [0, 1])."""

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[int, float] = field(repr=False)
    evaluator: str = DEFAULT_EVALUATOR
    rounding: str = "python3"

    def to_official(self) -> dict[str, Any]:
        """The JSON shape of ``vqaEval.accuracy`` (percent, rounded)."""
        return {
            "overall": self.overall,
            "perQuestionType": dict(self.per_question_type),
            "perAnswerType": dict(self.per_answer_type),
        }

    def eval_qa(self, precision: int = DEFAULT_PRECISION) -> dict[int, float]:
        """The official ``evalQA`` dict: per-question percent, rounded."""
        return {q: official_round(100 * a, precision, self.rounding) for q, a in self.per_question.items()}

    @property
    def evaluator_label(self) -> str:
        return evaluator_label(self.evaluator)


def _percent(values: list[float], precision: int, rounding: str) -> float:
    return official_round(100 * float(sum(values)) / len(values), precision, rounding)


def evaluate_vqa(
    annotations: Iterable[Mapping[str, Any]],
    predictions: Mapping[int, str],
    *,
    precision: int = DEFAULT_PRECISION,
    evaluator: str = DEFAULT_EVALUATOR,
    rounding: str = "python3",
    map_answer: Callable[[str], Any] | None = None,
) -> VQAAccuracy:
    """Official VQA accuracy over every annotated question (the official default is all annotation question ids).

    ``predictions`` maps question id -> answer string and must cover every annotation (validate with
    :func:`cvil.eval.results_io.validate_results` first; a missing id raises ``KeyError`` here, as upstream).
    ``evaluator``: ``"current"`` or ``"legacy-2017"``; ``rounding``: ``"python3"`` or ``"python2"`` (module docstring).
    """
    check_evaluator(evaluator)
    official_round(0.0, precision, rounding)  # rejects an unknown rounding before any work
    per_q: dict[int, float] = {}
    by_ans: dict[str, list[float]] = {}
    by_q: dict[str, list[float]] = {}
    for ann in annotations:
        qid = int(ann["question_id"])
        if qid not in predictions:
            raise KeyError(f"no prediction for question_id {qid}")
        acc = question_accuracy(predictions[qid], ann["answers"], evaluator=evaluator, map_answer=map_answer)
        per_q[qid] = acc
        by_q.setdefault(str(ann["question_type"]), []).append(acc)
        by_ans.setdefault(str(ann["answer_type"]), []).append(acc)
    if not per_q:
        raise ValueError("no annotations to evaluate")
    return VQAAccuracy(
        overall=_percent(list(per_q.values()), precision, rounding),
        per_answer_type={k: _percent(v, precision, rounding) for k, v in by_ans.items()},
        per_question_type={k: _percent(v, precision, rounding) for k, v in by_q.items()},
        per_question=per_q,
        evaluator=evaluator,
        rounding=rounding,
    )
