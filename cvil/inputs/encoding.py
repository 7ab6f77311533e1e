"""Question + object tags -> the text half of the Oscar input: `[CLS] question [SEP] tags [SEP]`.

Follows the reference (`tensorize_example`, `run_vqa_student.py:586-600` @98f288b; `task_utils.py:133`): the tag text
is `o.replace(';', ' ').strip()`; both parts are tokenised by the model's own (lower-casing) tokenizer. When the tag
text is non-empty the pair is truncated to `max_len - 3` pieces by popping from the longer part; when it is empty
(`o: ''` or `o: ';'`, as on real test rows) the question alone is cut to `max_len - 2`. The second `[SEP]` is added
only when the (truncated) tags tokenise to at least one piece, so an empty-tag text is `[CLS] q [SEP]`. Segment ids
are 0 for `[CLS]`, the question and the first `[SEP]`, 1 for the tags and the final `[SEP]`. Padding is not done
here: the collate function pads to the longest text in the batch (or to a fixed length).

Two entry points share one assembly step: `encode_text` for a single example and `encode_batch`, which tokenises all
questions (and the de-duplicated tag strings) in single fast-tokenizer calls, so that encoding a whole split at
dataset construction costs a few seconds rather than one Python tokenizer call per field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from cvil.data.tokenizers import tokenize_batch

CLS, SEP = "[CLS]", "[SEP]"
MAX_TEXT_LEN = 128


class EncodedText(NamedTuple):
    """One encoded text: the pieces (for alignment), their ids and the segment ids; all of equal length."""

    tokens: list[str]
    input_ids: list[int]
    token_type_ids: list[int]


def tags_text(tags: str) -> str:
    """The tag string as the reference tokenises it: `;`-separated tags become one space-separated text."""
    return tags.replace(";", " ").strip()


def truncate_pair(a: list, b: list, max_total: int) -> None:
    """Pop from the end of the longer list (from `b` on ties) until `len(a) + len(b) <= max_total`, in place.

    Works on parallel lists too: call it once per list pair you need truncated identically.
    """
    la, lb = truncated_lengths(len(a), len(b), max_total)
    del a[la:], b[lb:]


def truncated_lengths(len_a: int, len_b: int, max_total: int) -> tuple[int, int]:
    """The lengths `truncate_pair` leaves, without touching any list (used to truncate tokens and ids in step)."""
    while len_a + len_b > max_total:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def assemble(
    q_tokens: Sequence[str],
    q_ids: Sequence[int],
    t_tokens: Sequence[str],
    t_ids: Sequence[int],
    cls_id: int,
    sep_id: int,
    max_len: int = MAX_TEXT_LEN,
    has_tag_text: bool | None = None,
) -> EncodedText:
    """Truncate a (question, tags) piece pair as the reference does and add `[CLS]`/`[SEP]` and segment ids.

    `has_tag_text`: whether the raw tag text (`tags_text(o)`) is non-empty, which picks the budget (`max_len - 3`
    for the pair, else `max_len - 2` for the question alone); by default, whether there are tag pieces. A tag text
    that is non-empty but tokenises to nothing keeps the `- 3` budget and gets no second `[SEP]`, as in the release.
    """
    if max_len < 3:
        raise ValueError(f"max_len must be at least 3, got {max_len}")
    if has_tag_text is None:
        has_tag_text = len(t_tokens) > 0
    if has_tag_text:
        la, lb = truncated_lengths(len(q_tokens), len(t_tokens), max_len - 3)
    else:
        la, lb = min(len(q_tokens), max_len - 2), 0
    tokens = [CLS, *q_tokens[:la], SEP]
    ids = [cls_id, *q_ids[:la], sep_id]
    if lb:  # the release's `if tokens_b:` after truncation
        tokens += [*t_tokens[:lb], SEP]
        ids += [*t_ids[:lb], sep_id]
    segments = [0] * (la + 2) + [1] * (lb + 1 if lb else 0)
    return EncodedText(tokens, ids, segments)


def encode_text(tokenizer, question: str, tags: str, max_len: int = MAX_TEXT_LEN) -> EncodedText:
    """Encode one example; `tags` is the raw `o` field (`;`-separated). Returns (tokens, input_ids, token_type_ids)."""
    return encode_batch(tokenizer, [question], [tags], max_len)[0]


Pieces = tuple[list[str], list[int]]  # (pieces, ids) of one text, no special tokens


def tokenize_pairs(
    tokenizer, questions: Sequence[str], tags: Sequence[str]
) -> tuple[list[Pieces], list[str], dict[str, Pieces]]:
    """Untruncated pieces of every question, the tag text of every example, and the pieces per distinct tag text.

    Identical tag strings (all questions of one image) are tokenised once.
    """
    if len(questions) != len(tags):
        raise ValueError(f"{len(questions)} questions but {len(tags)} tag strings")
    tag_keys = [tags_text(t) for t in tags]
    unique = list(dict.fromkeys(tag_keys))
    return tokenize_batch(tokenizer, questions), tag_keys, dict(zip(unique, tokenize_batch(tokenizer, unique)))


def encode_batch(
    tokenizer, questions: Sequence[str], tags: Sequence[str], max_len: int = MAX_TEXT_LEN
) -> list[EncodedText]:
    """Encode many (question, raw `o` tags) pairs, as `encode_text` does one."""
    q_pieces, tag_keys, tag_pieces = tokenize_pairs(tokenizer, questions, tags)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    return [assemble(*q, *tag_pieces[k], cls_id, sep_id, max_len, bool(k)) for q, k in zip(q_pieces, tag_keys)]
