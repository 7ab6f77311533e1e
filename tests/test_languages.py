"""The language registry (`cvil.languages`): shipped files, user files, one-line errors, and no language code left
hard-coded in the source outside the language files."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest

from cvil import languages as registry
from cvil.config import ConfigError, load_config
from cvil.inputs.codemix import JOINERS
from cvil.data.text import target_words
from cvil.eval import question_types as qt
from cvil.eval.datasets import eval_dataset
from cvil.languages import LanguageError, add_paths, get_language, load_language_file
from cvil.world import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    registry.forget_added()
    yield
    registry.forget_added()


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ shipped files
def test_shipped_languages_declare_what_the_code_used_to_hard_code():
    ja, hi, zh, en = (get_language(c) for c in ("ja", "hi", "zh", "en"))
    assert (ja.question_field, ja.alignment_field, ja.codemix_joiner, ja.bleu_tokenizer) == ("ja", "ja-en", "", "fugashi")
    assert (hi.question_field, hi.alignment_field, hi.codemix_joiner, hi.bleu_tokenizer) == ("hi", "hi-en", " ", "13a")
    assert (zh.segmentation, zh.codemix_joiner, zh.bleu_tokenizer) == ("char", "", "zh")
    assert en.alignment_field is None and en.segmentation == "nltk"
    assert hi.merge_answers and not ja.merge_answers and not zh.merge_answers
    assert ja.needs_accents and hi.needs_accents and not zh.needs_accents
    assert JOINERS["ja"] == "" and JOINERS["hi"] == " " and "zh" in JOINERS and "xx" not in JOINERS


def test_japanese_question_types_are_the_former_table_of_the_code():
    """ja.yaml holds exactly the map cvil/eval/question_types.py defined before it became data."""
    particles = "はがをにでもとてへやのらば"

    def inside(word):
        return f"(?<=[ぁ-ゖ])(?<![{particles}])(?<!いったい){word}"

    before = {
        "nani": (("何", "なに", "なん"), ("なんで(?!す|しょう|も)", "なんでも", "何故", "何処")),
        "dare": (("誰", "だれ"), ()),
        "doko": (("どこ", "何処"), ()),
        "donna": (("どんな",), ()),
        "dorekurai": (("どれくらい", "どのくらい", "どれぐらい", "どのぐらい"), ()),
        "dou": (("どう", "どのように"), ("どうして", "ぶどう", "どうぶつ", "どうろ", inside("どう"))),
        "itsu": (("いつ",), ("いつも", "いつつ(?![かきくけこっ])", inside("いつ"))),
        "ikutsu": (("いくつ",), ()),
        "naze": (("なぜ", "何故", "どうして", "なんで"), ("なんです", "なんでしょう", "なんでも")),
    }
    table = qt.question_words("ja")
    assert list(table) == list(before)  # the row order of Table I(b)
    assert {name: (w.words, w.exclude) for name, w in table.items()} == before


def test_segmentations():
    assert target_words("猫是什么颜色的？", "zh") == ("猫", "是", "什", "么", "颜", "色", "的", "？")
    assert target_words("बिल्ली किस रंग की है?", "hi") == ("बिल्ली", "किस", "रंग", "की", "है?")
    assert target_words("車は何色ですか？", "ja") == ("車", "は", "何色", "です", "か", "？")
    assert target_words("What color is it?", "en") == ("What", "color", "is", "it", "?")
    assert registry.segment("ab-cd ef", r"regex:\w+|[^\w\s]") == ("ab", "-", "cd", "ef")


def test_chinese_question_types_mask_the_longer_words():
    zh = qt.question_words("zh")
    assert qt.classify("猫是什么颜色的？", zh) == ("shenme",)
    assert qt.classify("为什么猫在这里？", zh) == ("weishenme",)
    assert qt.classify("这是什么时候拍的？", zh) == ("shenmeshihou",)
    assert qt.classify("有几只猫？", zh) == ("ji",)


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_language_is_one_line_with_the_closest_code():
    with pytest.raises(LanguageError, match=r"unknown language 'jp'; did you mean 'ja'\?") as info:
        get_language("jp")
    assert "\n" not in str(info.value) and "known: en, hi, ja, zh" in str(info.value)
    with pytest.raises(ValueError, match="did you mean 'zh'"):
        target_words("x", "zhh")


@pytest.mark.parametrize(("text", "message"), [
    ("code: xx\nsegmentaton: char\n", "unknown key 'segmentaton'; did you mean 'segmentation'"),
    ("code: xx\nsegmentation: chars\n", "unknown segmentation 'chars'; did you mean 'char'"),
    ("code: xx\nsegmentation: 'regex:('\n", "is not a regular expression"),
    ("code: xx\nbleu: 13b\n", "unknown BLEU tokenizer '13b'; did you mean '13a'"),
    ("code: xx\ncodemix_joiner: 1\n", "codemix_joiner: expected a string"),
    ("code: xx\nmerge_answers: yes please\n", "merge_answers: expected true or false"),
    ("code: xx\nquestion_types: {what: {words: []}}\n", "expected at least one question word"),
    ("code: xx\nquestion_types: {what: {words: [a], exclude: ['(']}}\n", "is not a regular expression"),
    ("- a list\n", "top level: expected a mapping"),
])
def test_a_bad_language_file_is_refused_on_one_line(tmp_path, text, message):
    path = _write(tmp_path, "xx.yaml", text)
    with pytest.raises(LanguageError, match=re.escape(message)) as info:
        load_language_file(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ user files
XX = """\
code: xx
name: Pseudo
segmentation: 'regex:\\w+|[^\\w\\s]'
codemix_joiner: " "
bleu: char
merge_answers: true
question_types: {what: {words: [wat]}}
"""


def test_user_files_by_env_var_by_config_key_and_by_add_paths(tmp_path, monkeypatch):
    with pytest.raises(LanguageError):
        get_language("xx")
    folder = tmp_path / "langs"
    _write(folder, "xx.yaml", XX)
    monkeypatch.setenv(registry.ENV_VAR, str(folder))
    xx = get_language("xx")
    assert (xx.question_field, xx.alignment_field, xx.bleu_tokenizer) == ("xx", "xx-en", "char")
    assert target_words("wat is-it?", "xx") == ("wat", "is", "-", "it", "?")
    assert eval_dataset("vqa").metric_for("xx", tmp_path) == "vqa"  # merged, but no merged classes file here
    assert eval_dataset("vqa").kind("xx") == "hindi" and eval_dataset("vqa").kind("zh") == "vqa"
    monkeypatch.delenv(registry.ENV_VAR)
    with pytest.raises(LanguageError):
        get_language("xx")
    # the config key: a stage may then name it; an unknown stage language is a config error with a suggestion
    base = CONFIG_DIR / "synthetic" / "hindi_baseline.yaml"
    cfg = load_config(base, [f"data.languages=[{folder / 'xx.yaml'}]", "stages.0.lang=xx", "stages.1.lang=xx"])
    assert cfg.data.languages == (str(folder / "xx.yaml"),) and get_language("xx").name == "Pseudo"
    registry.forget_added()
    with pytest.raises(ConfigError, match=r"stages\.0\.lang: unknown language 'xxx'; did you mean 'xx'\?"):
        load_config(base, [f"data.languages=[{folder}]", "stages.0.lang=xxx"])
    with pytest.raises(ConfigError, match="data.languages: language file or folder not found"):
        load_config(base, [f"data.languages=[{tmp_path / 'none.yaml'}]"])


def test_a_user_file_replaces_a_shipped_language_of_the_same_code(tmp_path):
    add_paths([_write(tmp_path, "zh.yaml", "code: zh\nsegmentation: whitespace\n")])
    assert target_words("猫 是", "zh") == ("猫", "是")
    registry.forget_added()
    assert target_words("猫 是", "zh") == ("猫", "是") and get_language("zh").segmentation == "char"


def test_two_languages_cannot_claim_one_field(tmp_path):
    with pytest.raises(LanguageError, match="'ja' is already the question_field of language 'ja'"):
        add_paths([_write(tmp_path, "ja2.yaml", "code: ja2\nquestion_field: ja\n")])
    assert get_language("ja").question_field == "ja" and "ja2" not in registry.codes()  # nothing registered


def test_accent_stripping_student_tokenizer_is_a_warning_for_languages_that_need_accents(caplog):
    from tokenizers import Tokenizer, models, normalizers

    class Fast:  # what HF fast tokenizers expose
        def __init__(self, strip: bool, name: str):
            self.backend_tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
            self.backend_tokenizer.normalizer = normalizers.BertNormalizer(strip_accents=strip, lowercase=True)
            self.name_or_path = name

    with caplog.at_level(logging.WARNING, logger="cvil.languages"):
        assert registry.check_tokenizer("ja", Fast(True, "uncased"))
        assert not registry.check_tokenizer("ja", Fast(True, "uncased"))  # once per language and tokenizer
        assert not registry.check_tokenizer("ja", Fast(False, "cased"))
        assert not registry.check_tokenizer("zh", Fast(True, "uncased"))  # zh needs no accents
    assert [r.getMessage() for r in caplog.records] == [
        "the student tokenizer lowercases and strips accents, and Japanese questions need them (needs_accents in "
        "ja.yaml): an uncased mBERT-style normaliser removes dakuten and handakuten (です -> てす, ぶどう -> ふとう)"]


# ------------------------------------------------------------------------------------------------ no codes in code
SCANNED = ("cvil", "bench", "leaderboards")
#: files that are language data themselves: the synthetic world's vocabulary, per language by nature
DATA_FILES = {"cvil/data/synth/lexicon.py"}
#: literals that are no lookup of a language (path, the literal, why)
ALLOWED = {
    ("cvil/eval/hindi.py", "hi"): "class-key tag of the merged-class metric ((\"hi\", label) vs (\"en\", answer))",
    ("bench/scale.py", "ja"): "a benchmark's fixed setting (as bench/throughput/variants.py LANG, lang-default)",
}
MARK = "lang-default:"  # a commented default (a config dataclass field, a constant naming the JVG set's language)


def _code_literals(codes: set[str], skip: set[str] = DATA_FILES):
    pattern = re.compile(rf"^(gold-)?({'|'.join(map(re.escape, sorted(codes)))})(-en)?$")
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in skip or "/configs/" in rel:
                continue
            source = path.read_text(encoding="utf-8")
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value):
                    code = pattern.match(node.value).group(2)
                    line = lines[node.lineno - 1]
                    if MARK in line or (rel, code) in ALLOWED:
                        continue
                    yield f"{rel}:{node.lineno}: {node.value!r}: {line.strip()}"


def test_no_language_code_is_hard_coded_outside_the_language_files():
    """Every place that needs a language reads the registry (cvil.languages); a default that must name one says so
    with a `# lang-default: why` comment on its line."""
    codes = {c for c in registry.codes() if c != "en"}  # English is the teacher's side, not a choice of language
    assert {"ja", "hi", "zh"} <= codes
    found = list(_code_literals(codes))
    assert not found, "hard-coded language codes (read cvil.languages instead):\n" + "\n".join(found)


def test_the_scan_sees_a_hard_coded_code():
    assert not [m for m in _code_literals({"ja"}) if "lexicon.py" in m]  # the data file is skipped ...
    assert [m for m in _code_literals({"ja"}, skip=set()) if "lexicon.py" in m]  # ... and its literals would be found
