"""The language registry: a language is a YAML file (README "Adding a language").

Every place that used to name a question language in code reads it here: the QLA question and alignment fields, the
word segmentation of `{lang}-en` alignments, the code-mix joiner, the BLEU tokenizer, the question-type words of the
Table I(b)-style breakdown, whether answers are merged across translations (the Hindi class set) and whether the
script needs accents the student tokenizer may strip.

Where files come from, later ones replacing a language of the same code:
1. the shipped files beside this module (`en.yaml`, `ja.yaml`, `hi.yaml`, `zh.yaml`);
2. the files and folders (every `*.yaml` in them) of the environment variable `CVIL_LANGUAGES`, separated by
   `os.pathsep`;
3. those added at run time with `add_paths` (a run config's `data.languages`, `cvil data add-language
   --language-file`).

A language file (every key but `code`, `name` and the question fields has a default):

    code: zh                      # default: the file name without .yaml
    name: Chinese
    question_field: zh            # the QLA field of the question (default: code)
    alignment_field: zh-en        # the QLA field of its word alignment (default: <code>-en; null: none)
    segmentation: char            # nltk | fugashi | whitespace | char | regex:<pattern>
    codemix_joiner: ""            # how the code-mixer joins the words back ("" or " ")
    bleu: zh                      # fugashi+nltk, or a sacrebleu tokenizer (13a, zh, char, intl, ja-mecab, ...)
    merge_answers: false          # score over answer classes merged across translations (the Hindi rule)
    needs_accents: false          # warn when the student tokenizer strips accents
    accent_note: ""               # what stripping removes, for that warning
    question_types: {}            # name: {words: [...], exclude: [regular expressions masked first]}

An unknown code is refused on one line with the closest known codes (`get_language`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cvil.errors import UsageError
from cvil.languages.segmenters import english_words, japanese_words
from cvil.suggest import did_you_mean, unknown_choice

log = logging.getLogger(__name__)

#: the language of the JVG-like set (`vg/`: the Japanese Visual Genome and its synthetic stand-in), where a command
#: about that set is not told another (`cvil data prepare-jvg`, `cvil eval jvg`, Fig. 3's student side)
JVG_LANGUAGE = "ja"  # lang-default: the JVG set is Japanese
BUILTIN_DIR = Path(__file__).resolve().parent
ENV_VAR = "CVIL_LANGUAGES"
SEGMENTATIONS = ("nltk", "fugashi", "whitespace", "char")  # and "regex:<pattern>"
REGEX_PREFIX = "regex:"
NLTK_BLEU = "fugashi+nltk"  # fugashi + unidic-lite words, NLTK's BLEU (cvil.eval.bleu, the paper's JVG BLEU)
KEYS = ("code", "name", "question_field", "alignment_field", "segmentation", "codemix_joiner", "bleu",
        "merge_answers", "needs_accents", "accent_note", "question_types")
QUESTION_TYPE_KEYS = ("words", "exclude")


class LanguageError(UsageError):
    """An unknown language code or a malformed language file (one line, with a did-you-mean)."""


@dataclass(frozen=True)
class QuestionType:
    """One row of a per-question-type breakdown: the words that mark it and the patterns masked before searching."""

    name: str
    words: tuple[str, ...]
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    question_field: str
    alignment_field: str | None
    segmentation: str = "whitespace"
    codemix_joiner: str = " "
    bleu: str = "13a"
    merge_answers: bool = False
    needs_accents: bool = False
    accent_note: str = ""
    question_types: tuple[QuestionType, ...] = field(default=())
    source: str = ""  # the file it was read from

    @property
    def bleu_tokenizer(self) -> str:
        """The `tokenizer` of `cvil.eval.bleu.corpus_bleu`: `fugashi` (NLTK backend) or a sacrebleu tokenizer."""
        return "fugashi" if self.bleu == NLTK_BLEU else self.bleu

    def words(self, text: str) -> tuple[str, ...]:
        """The words of `text` as its `{lang}-en` alignment entries list them (the declared segmentation)."""
        return segment(text, self.segmentation)


# ------------------------------------------------------------------------------------------------ segmentation
def segment(text: str, segmentation: str) -> tuple[str, ...]:
    """Words of `text` by segmentation name: `nltk` (English, NLTK's Treebank words), `fugashi` (+ unidic-lite surface
    forms), `whitespace`, `char` (every non-space character) or `regex:<pattern>` (every match, in order)."""
    if segmentation == "nltk":
        return english_words(text)
    if segmentation == "fugashi":
        return japanese_words(text)
    if segmentation == "whitespace":
        return tuple(text.split())
    if segmentation == "char":
        return tuple(c for c in text if not c.isspace())
    if segmentation.startswith(REGEX_PREFIX):
        return tuple(m.group(0) for m in _compiled(segmentation[len(REGEX_PREFIX):]).finditer(text))
    raise LanguageError(unknown_choice("segmentation", segmentation, SEGMENTATIONS + (REGEX_PREFIX + "<pattern>",)))


_PATTERNS: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = re.compile(pattern)
    return _PATTERNS[pattern]


# ------------------------------------------------------------------------------------------------ files
def _bleu_names() -> tuple[str, ...]:
    try:
        from sacrebleu.metrics.bleu import _TOKENIZERS
    except ImportError:  # pragma: no cover - sacrebleu is a dependency
        return (NLTK_BLEU,)
    return (NLTK_BLEU, *_TOKENIZERS)


def _fail(path: Path, where: str, message: str) -> LanguageError:
    return LanguageError(f"{path}: {where}: {message}")


def _strings(path: Path, where: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, where, f"expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _question_types(path: Path, raw: object) -> tuple[QuestionType, ...]:
    if raw in (None, {}):
        return ()
    if not isinstance(raw, dict):
        raise _fail(path, "question_types", f"expected a mapping name: {{words: [...], exclude: [...]}}, got {raw!r}")
    out = []
    for name, spec in raw.items():
        where = f"question_types.{name}"
        if isinstance(spec, list):
            spec = {"words": spec}
        if not isinstance(spec, dict):
            raise _fail(path, where, f"expected {{words: [...], exclude: [...]}}, got {spec!r}")
        unknown = [k for k in spec if k not in QUESTION_TYPE_KEYS]
        if unknown:
            raise _fail(path, where, unknown_choice("key", str(unknown[0]), QUESTION_TYPE_KEYS))
        words = _strings(path, f"{where}.words", spec.get("words"))
        if not words:
            raise _fail(path, f"{where}.words", "expected at least one question word")
        exclude = _strings(path, f"{where}.exclude", spec.get("exclude"))
        for pattern in exclude:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise _fail(path, f"{where}.exclude", f"{pattern!r} is not a regular expression ({exc})") from None
        out.append(QuestionType(str(name), words, exclude))
    return tuple(out)


def load_language_file(path: str | Path) -> Language:
    """Read and check one language file (unknown keys, segmentation and BLEU names are refused with a suggestion)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LanguageError(f"language file not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LanguageError(f"{path}: not a readable YAML language file ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _fail(path, "top level", f"expected a mapping of {', '.join(KEYS)}, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise _fail(path, "key", unknown_choice("key", str(unknown[0]), KEYS))
    code = str(raw.get("code") or path.stem)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*", code) or code.endswith("-en"):
        raise _fail(path, "code", f"expected a language code such as zh or pt_br, got {code!r}")
    segmentation = str(raw.get("segmentation", "whitespace"))
    if segmentation.startswith(REGEX_PREFIX):
        try:
            re.compile(segmentation[len(REGEX_PREFIX):])
        except re.error as exc:
            raise _fail(path, "segmentation", f"{segmentation!r} is not a regular expression ({exc})") from None
    elif segmentation not in SEGMENTATIONS:
        raise _fail(path, "segmentation", unknown_choice("segmentation", segmentation,
                                                         SEGMENTATIONS + (REGEX_PREFIX + "<pattern>",)))
    bleu = str(raw.get("bleu", "13a"))
    if bleu not in _bleu_names():
        raise _fail(path, "bleu", unknown_choice("BLEU tokenizer", bleu, _bleu_names()))
    joiner = raw.get("codemix_joiner", " ")
    if not isinstance(joiner, str):
        raise _fail(path, "codemix_joiner", f"expected a string (\"\" or \" \"), got {joiner!r}")
    flags = {}
    for key in ("merge_answers", "needs_accents"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise _fail(path, key, f"expected true or false, got {value!r}")
        flags[key] = value
    alignment = raw.get("alignment_field", f"{code}-en")
    question_field = raw.get("question_field", code)
    for key, value in (("question_field", question_field), ("alignment_field", alignment)):
        if value is not None and not (isinstance(value, str) and value):
            raise _fail(path, key, f"expected a field name, got {value!r}")
    return Language(code=code, name=str(raw.get("name", code)), question_field=question_field,
                    alignment_field=alignment, segmentation=segmentation, codemix_joiner=joiner, bleu=bleu,
                    accent_note=str(raw.get("accent_note", "")), question_types=_question_types(path, raw.get("question_types")),
                    source=str(path), **flags)


def _files(entry: str | Path) -> list[Path]:
    path = Path(entry).expanduser()
    if path.is_dir():
        return sorted(path.glob("*.yaml"))
    if not path.exists():
        raise LanguageError(f"language file or folder not found: {path}")
    return [path]


# ------------------------------------------------------------------------------------------------ registry
_parsed: dict[tuple[str, int, int], Language] = {}
_added: list[Path] = []


def _read(path: Path) -> Language:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        _parsed[key] = load_language_file(path)
    return _parsed[key]


def _env_paths() -> list[Path]:
    value = os.environ.get(ENV_VAR, "")
    return [f for entry in value.split(os.pathsep) if entry.strip() for f in _files(entry.strip())]


_merged: dict[tuple, dict[str, Language]] = {}


def languages() -> dict[str, Language]:
    """Every known language by code: shipped files, then `CVIL_LANGUAGES`, then `add_paths` (later ones win)."""
    key = (os.environ.get(ENV_VAR, ""), tuple(_added))
    if key not in _merged:
        _merged[key] = _merge()
    return dict(_merged[key])


def _merge() -> dict[str, Language]:
    out: dict[str, Language] = {}
    for path in [*sorted(BUILTIN_DIR.glob("*.yaml")), *_env_paths(), *_added]:
        lang = _read(path)
        if lang.code in out and out[lang.code].source != lang.source:
            log.info("language %r of %s replaces the one of %s", lang.code, lang.source, out[lang.code].source)
        out[lang.code] = lang
    for kind in ("question_field", "alignment_field"):  # the QLA reader maps each field to one language
        owner: dict[str, Language] = {}
        for lang in out.values():
            name = getattr(lang, kind)
            if name is not None and owner.setdefault(name, lang) is not lang:
                first = owner[name]
                raise LanguageError(f"{lang.source}: {kind}: {name!r} is already the {kind} of language "
                                    f"{first.code!r} ({first.source}); give {lang.code!r} its own")
    return out


def add_paths(paths: Iterable[str | Path]) -> list[Language]:
    """Register language files (or folders of them) for the rest of the process; returns the languages they hold."""
    found, before = [], list(_added)
    for entry in paths:
        for path in _files(entry):
            found.append(_read(path))
            resolved = path.resolve()
            if resolved not in _added:
                _added.append(resolved)
    try:
        languages()  # two languages claiming one field: refused now, and the registry stays as it was
    except LanguageError:
        _added[:] = before
        raise
    return found


def forget_added() -> None:
    """Drop the files registered with `add_paths` (tests)."""
    _added.clear()
    _merged.clear()


def get_language(code: str) -> Language:
    """The language `code`, or a one-line `LanguageError` naming the closest codes and where files come from."""
    known = languages()
    if code in known:
        return known[code]
    hint = did_you_mean(str(code), known, n=2, cutoff=0.5)  # two-letter codes: jp -> ja
    raise LanguageError(f"unknown language {code!r}{hint} (known: {', '.join(sorted(known))}; add one with a "
                        f"language file: data.languages=[PATH] or {ENV_VAR}=PATH, see README \"Adding a language\")")


def codes() -> tuple[str, ...]:
    return tuple(languages())


def question_fields() -> dict[str, str]:
    """{QLA question field: language code} of every known language."""
    return {lang.question_field: lang.code for lang in languages().values()}


def alignment_fields() -> dict[str, str]:
    """{QLA alignment field: language code} of every known language that has one."""
    return {lang.alignment_field: lang.code for lang in languages().values() if lang.alignment_field}


# ------------------------------------------------------------------------------------------------ normalisation
_warned: set[tuple[str, str]] = set()
_PROBE = "\u00e9"  # é: an accent-stripping normaliser makes it e


def strips_accents(tokenizer) -> bool:
    """Whether `tokenizer` removes combining marks (BertNormalizer's strip_accents, on by default with lowercase)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None) if backend is not None else None
    if normalizer is not None:
        return normalizer.normalize_str(_PROBE) == "e"
    try:
        return tokenizer.tokenize(_PROBE) == ["e"]
    except Exception:  # noqa: BLE001 - a tokenizer we cannot probe: say nothing
        return False


def check_tokenizer(code: str, tokenizer, where: str = "the student tokenizer") -> bool:
    """Warn (once per language and tokenizer) when a language that `needs_accents` meets an accent-stripping
    tokenizer; returns whether it warned. Uncased mBERT does strip them, so this is a caveat, not an error."""
    lang = get_language(code)
    if not lang.needs_accents or not strips_accents(tokenizer):
        return False
    key = (code, str(getattr(tokenizer, "name_or_path", id(tokenizer))))
    if key in _warned:
        return False
    _warned.add(key)
    note = f": {lang.accent_note}" if lang.accent_note else ""
    log.warning("%s lowercases and strips accents, and %s questions need them (needs_accents in %s)%s",
                where, lang.name, Path(lang.source).name, note)
    return True
