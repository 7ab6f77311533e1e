"""The words of the synthetic world in English, Japanese and Hindi, with the grammar the templates need.

Object classes carry the Japanese counter word (匹 / 頭 / 台 / 本 ...), whether Japanese uses いる (animate) or ある,
the Hindi plural and grammatical gender (का/की, कितने/कितनी, and adjective agreement नीला/नीली). Colours carry the
Japanese surface variants that "real" Japanese answers use (白 / 白色 / 白い / 白です). Positions are the 3 × 3 cells
of the image; their English names are the answers of "where is the X?".

Question templates are given per language as lists of *segments*: one segment is one target-language word of the
lexicon segmentation (Japanese has no spaces; this list *is* our word segmentation), paired with the English word it
translates (its gold alignment) or None when it is unaligned (particles such as は / か, Hindi का / की). Slots in
braces are filled per question; a slot may expand to several words (Hindi "ऊपर बाएँ").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectClass:
    en: str
    en_plural: str
    ja: str
    ja_counter: str     # 匹, 頭, 台, 本, 個, ...
    animate: bool       # Japanese いる vs ある
    hi: str
    hi_plural: str
    hi_gender: str      # "m" or "f"


# The first `Preset.n_classes` are used. Single English words only, so `o` tags are one word per detection.
CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("cat", "cats", "猫", "匹", True, "बिल्ली", "बिल्लियाँ", "f"),
    ObjectClass("dog", "dogs", "犬", "匹", True, "कुत्ता", "कुत्ते", "m"),
    ObjectClass("car", "cars", "車", "台", False, "कार", "कारें", "f"),
    ObjectClass("horse", "horses", "馬", "頭", True, "घोड़ा", "घोड़े", "m"),
    ObjectClass("elephant", "elephants", "象", "頭", True, "हाथी", "हाथी", "m"),
    ObjectClass("umbrella", "umbrellas", "傘", "本", False, "छाता", "छाते", "m"),
    ObjectClass("bus", "buses", "バス", "台", False, "बस", "बसें", "f"),
    ObjectClass("bird", "birds", "鳥", "羽", True, "चिड़िया", "चिड़ियाँ", "f"),
    ObjectClass("chair", "chairs", "椅子", "脚", False, "कुर्सी", "कुर्सियाँ", "f"),
    ObjectClass("cup", "cups", "カップ", "個", False, "कप", "कप", "m"),
    ObjectClass("bicycle", "bicycles", "自転車", "台", False, "साइकिल", "साइकिलें", "f"),
    ObjectClass("apple", "apples", "りんご", "個", False, "सेब", "सेब", "m"),
    ObjectClass("boat", "boats", "ボート", "隻", False, "नाव", "नावें", "f"),
    ObjectClass("clock", "clocks", "時計", "個", False, "घड़ी", "घड़ियाँ", "f"),
    ObjectClass("bottle", "bottles", "瓶", "本", False, "बोतल", "बोतलें", "f"),
    ObjectClass("banana", "bananas", "バナナ", "本", False, "केला", "केले", "m"),
    ObjectClass("cow", "cows", "牛", "頭", True, "गाय", "गायें", "f"),
    ObjectClass("sheep", "sheep", "羊", "匹", True, "भेड़", "भेड़ें", "f"),
    ObjectClass("bear", "bears", "熊", "頭", True, "भालू", "भालू", "m"),
    ObjectClass("truck", "trucks", "トラック", "台", False, "ट्रक", "ट्रक", "m"),
    ObjectClass("train", "trains", "電車", "台", False, "ट्रेन", "ट्रेनें", "f"),
    ObjectClass("book", "books", "本", "冊", False, "किताब", "किताबें", "f"),
    ObjectClass("table", "tables", "テーブル", "台", False, "मेज़", "मेज़ें", "f"),
    ObjectClass("bed", "beds", "ベッド", "台", False, "बिस्तर", "बिस्तर", "m"),
    ObjectClass("kite", "kites", "凧", "個", False, "पतंग", "पतंगें", "f"),
    ObjectClass("giraffe", "giraffes", "キリン", "頭", True, "जिराफ़", "जिराफ़", "m"),
    ObjectClass("zebra", "zebras", "シマウマ", "頭", True, "ज़ेबरा", "ज़ेबरा", "m"),
    ObjectClass("pizza", "pizzas", "ピザ", "枚", False, "पिज़्ज़ा", "पिज़्ज़ा", "m"),
    ObjectClass("lamp", "lamps", "ランプ", "個", False, "लैंप", "लैंप", "m"),
    ObjectClass("vase", "vases", "花瓶", "個", False, "फूलदान", "फूलदान", "m"),
    ObjectClass("laptop", "laptops", "ノートパソコン", "台", False, "लैपटॉप", "लैपटॉप", "m"),
    ObjectClass("phone", "phones", "電話", "台", False, "फ़ोन", "फ़ोन", "m"),
)


@dataclass(frozen=True)
class Colour:
    en: str
    ja: str                 # canonical Japanese answer (the noun)
    ja_variants: tuple      # common surface variants of the same answer (白色, 白い)
    hi_m: str               # masculine / base form (also the Hindi answer label)
    hi_f: str


COLOURS: tuple[Colour, ...] = (
    Colour("red", "赤", ("赤色", "赤い"), "लाल", "लाल"),
    Colour("blue", "青", ("青色", "青い"), "नीला", "नीली"),
    Colour("green", "緑", ("緑色",), "हरा", "हरी"),
    Colour("yellow", "黄色", ("黄色い", "黄"), "पीला", "पीली"),
    Colour("white", "白", ("白色", "白い"), "सफ़ेद", "सफ़ेद"),
    Colour("black", "黒", ("黒色", "黒い"), "काला", "काली"),
    Colour("brown", "茶色", ("茶", "茶色い"), "भूरा", "भूरी"),
    Colour("gray", "灰色", ("グレー", "灰"), "स्लेटी", "स्लेटी"),
    Colour("orange", "オレンジ", ("オレンジ色",), "नारंगी", "नारंगी"),
    Colour("pink", "ピンク", ("ピンク色",), "गुलाबी", "गुलाबी"),
    Colour("purple", "紫", ("紫色",), "बैंगनी", "बैंगनी"),
)


@dataclass(frozen=True)
class Position:
    en: str                 # answer of "where is the X?"
    row: int                # 0 top, 1 middle, 2 bottom
    col: int                # 0 left, 1 middle, 2 right
    ja: str
    hi: tuple               # Hindi words (the answer label is " ".join(hi))


POSITIONS: tuple[Position, ...] = (
    Position("top left", 0, 0, "左上", ("ऊपर", "बाएँ")),
    Position("top", 0, 1, "上", ("ऊपर",)),
    Position("top right", 0, 2, "右上", ("ऊपर", "दाएँ")),
    Position("left", 1, 0, "左", ("बाएँ",)),
    Position("middle", 1, 1, "真ん中", ("बीच", "में")),
    Position("right", 1, 2, "右", ("दाएँ",)),
    Position("bottom left", 2, 0, "左下", ("नीचे", "बाएँ")),
    Position("bottom", 2, 1, "下", ("नीचे",)),
    Position("bottom right", 2, 2, "右下", ("नीचे", "दाएँ")),
)
POSITION_BY_CELL = {(p.row, p.col): p for p in POSITIONS}

# English answer synonyms annotators use (the VQA label set keeps them as separate classes; the Hindi class set
# merges them, as paper §V-B does for up/above -> ऊपर).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "top": ("up", "above"),
    "bottom": ("down", "below"),
    "middle": ("center",),
    "gray": ("grey",),
    "top left": ("upper left",),
    "top right": ("upper right",),
    "bottom left": ("lower left",),
    "bottom right": ("lower right",),
}
# answers annotators give when they do not know; kept small so the label set stays closed
JUNK_ANSWERS: tuple[str, ...] = ("not sure", "nothing", "unknown")

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
HI_NUMBERS = ("शून्य", "एक", "दो", "तीन", "चार", "पाँच", "छह", "सात", "आठ", "नौ", "दस")
JA_NUMBERS = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十")

HI_FIXED: dict[str, str] = {
    "yes": "हाँ", "no": "नहीं",
    "not sure": "पता नहीं", "unknown": "पता नहीं", "nothing": "कुछ नहीं",
    "up": "ऊपर", "above": "ऊपर", "down": "नीचे", "below": "नीचे", "center": "बीच में", "grey": "स्लेटी",
    "upper left": "ऊपर बाएँ", "upper right": "ऊपर दाएँ", "lower left": "नीचे बाएँ", "lower right": "नीचे दाएँ",
    "on left": "बाएँ", "on right": "दाएँ",
}


def hindi_answer(en: str) -> str:
    """The Hindi answer class of a (normalised) English answer; synonyms map to the same Hindi word."""
    if en in HI_FIXED:
        return HI_FIXED[en]
    for c in COLOURS:
        if c.en == en:
            return c.hi_m
    for p in POSITIONS:
        if p.en == en:
            return " ".join(p.hi)
    for o in CLASSES:
        if en in (o.en, o.en_plural):
            return o.hi
    if en.isdigit():
        return HI_NUMBERS[int(en)] if int(en) < len(HI_NUMBERS) else en
    raise KeyError(f"no Hindi translation for the English answer {en!r}")


# ----------------------------------------------------------------------------------------------------------------
# Question templates of the VQA-like set: English text, VQA question_type prefix, answer_type, and the segmented
# Japanese / Hindi renderings with gold alignments (English word, or None when the target word is unaligned).
# Slots: English {a} (a/an) {c} {cs} {col} {pos}; Japanese {C} {CTR} {ARU} {COLJ} {POSJ}; Hindi {C} {CS} {KA} {KITNE} {COLH}
# {POSH} (multi-word).  An alignment target "{c}" means "the English class word".
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    qtype: str              # our generator type: color, position, exist, count, is_color, what_at
    en: str
    question_type: str      # the VQA-style prefix
    answer_type: str
    ja: tuple
    hi: tuple


VQA_TEMPLATES: tuple[Template, ...] = (
    Template("color", "what color is the {c}?", "what color is the", "other",
             (("{C}", "{c}"), ("は", None), ("何色", "color"), ("です", "is"), ("か", None), ("？", None)),
             (("{C}", "{c}"), ("किस", "what"), ("रंग", "color"), ("{KA}", None), ("है", "is"), ("?", "?"))),
    Template("color", "what is the color of the {c}?", "what is the color of the", "other",
             (("{C}", "{c}"), ("の", "of"), ("色", "color"), ("は", None), ("何", "what"), ("です", "is"),
              ("か", None), ("？", None)),
             (("{C}", "{c}"), ("का", "of"), ("रंग", "color"), ("क्या", "what"), ("है", "is"), ("?", "?"))),
    Template("position", "where is the {c}?", "where is the", "other",
             (("{C}", "{c}"), ("は", None), ("どこ", "where"), ("に", None), ("{ARU}", "is"), ("ます", "is"),
              ("か", None), ("？", None)),
             (("{C}", "{c}"), ("कहाँ", "where"), ("है", "is"), ("?", "?"))),
    Template("position", "where is the {c} located?", "where is the", "other",
             (("{C}", "{c}"), ("は", None), ("どこ", "where"), ("に", None), ("位置", "located"), ("して", None),
              ("い", None), ("ます", "is"), ("か", None), ("？", None)),
             (("{C}", "{c}"), ("कहाँ", "where"), ("स्थित", "located"), ("है", "is"), ("?", "?"))),
    Template("exist", "is there {a} {c} in the picture?", "is there a", "yes/no",
             (("写真", "picture"), ("に", "in"), ("{C}", "{c}"), ("は", None), ("{ARU}", "there"), ("ます", "is"),
              ("か", None), ("？", None)),
             (("क्या", "is"), ("तस्वीर", "picture"), ("में", "in"), ("{C}", "{c}"), ("है", "is"), ("?", "?"))),
    Template("count", "how many {cs} are there?", "how many", "number",
             (("{C}", "{cs}"), ("は", None), ("何", "how"), ("{CTR}", "many"), ("{ARU}", "are"), ("ます", "there"),
              ("か", None), ("？", None)),
             (("{KITNE}", "how"), ("{CS}", "{cs}"), ("हैं", "are"), ("?", "?"))),
    Template("is_color", "is the {c} {col}?", "is the", "yes/no",
             (("{C}", "{c}"), ("は", None), ("{COLJ}", "{col}"), ("です", "is"), ("か", None), ("？", None)),
             (("क्या", "is"), ("{C}", "{c}"), ("{COLH}", "{col}"), ("है", "is"), ("?", "?"))),
    Template("what_at", "what is in the {pos} of the picture?", "what is in the", "other",
             (("写真", "picture"), ("の", "of"), ("{POSJ}", "{pos}"), ("に", "in"), ("何", "what"), ("が", None),
              ("あり", "is"), ("ます", None), ("か", None), ("？", None)),
             (("तस्वीर", "picture"), ("के", "of"), ("{POSH}", "{pos}"), ("क्या", "what"), ("है", "is"),
              ("?", "?"))),
)


# English-only templates of the teacher's pre-training corpus (`Preset.teacher_images`): never translated, so they
# carry no Japanese / Hindi rendering, and no preset may put their types in `vqa_mix`.
TEACHER_TEMPLATES: tuple[Template, ...] = (
    Template("size", "how big is the {c}?", "how big is the", "other", (), ()),
    Template("size", "what size is the {c}?", "what size is the", "other", (), ()),
)


def templates_of(qtype: str) -> tuple[Template, ...]:
    out = tuple(t for t in VQA_TEMPLATES + TEACHER_TEMPLATES if t.qtype == qtype)
    if not out:
        raise KeyError(f"no template for question type {qtype!r}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# JVG-like Japanese set: its own phrasing (どんな色, どこですか, いくつ, 何個 ...) and question words of Table I(b).
# ----------------------------------------------------------------------------------------------------------------

JVG_TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": ("{C}は何色ですか？", "{C}はどんな色ですか？", "この{C}は何色？", "{C}の色は何ですか？"),
    "position": ("{C}はどこにありますか？", "{C}はどこですか？", "{C}は画像のどこに{ARU}ますか？"),
    "count": ("{C}はいくつありますか？", "{C}は何{CTR}{ARU}ますか？", "{C}の数はいくつですか？", "{C}は何個ありますか？"),
    "size": ("{C}はどれくらいの大きさですか？", "{C}の大きさはどれくらいですか？"),
    "what": ("画像の{POSJ}に何がありますか？", "{POSJ}にあるのは何ですか？", "{POSJ}にはなにがありますか？"),
    "who": ("{C}の近くにいるのは誰ですか？", "誰が{C}を見ていますか？", "だれが写っていますか？"),
    "when": ("この写真はいつ撮られましたか？", "いつの写真ですか？"),
    "how": ("天気はどうですか？", "{C}の様子はどうですか？"),
    "why": ("なぜ{C}がここに{ARU}ますか？", "なぜ{C}は{POSJ}に{ARU}ますか？"),
}

JVG_SIZE = {"small": "小さい", "medium": "普通", "large": "大きい"}
JVG_SIZE_VARIANTS = {"small": ("小さいです", "とても小さい"), "medium": ("中くらい", "普通です"),
                     "large": ("大きいです", "とても大きい")}
# answers to questions the image cannot answer (who / when / how / why): a prior plus a long tail
JVG_PRIOR: dict[str, tuple[tuple[str, float], ...]] = {
    "who": (("男性", 0.34), ("女性", 0.24), ("子供", 0.1), ("男の子", 0.07), ("人", 0.08)),
    "when": (("昼", 0.34), ("日中", 0.2), ("夜", 0.14), ("朝", 0.1), ("夕方", 0.07)),
    "how": (("晴れ", 0.34), ("曇り", 0.25), ("雨", 0.1), ("晴れています", 0.1)),
    "why": (("休んでいるから", 0.3), ("食べるため", 0.1)),     # JVG why-answers: mostly clauses
}
# pools from which long-tail (rarely repeated) answers are composed
JVG_TAIL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "who": (("若い", "年配の", "背の高い", "笑っている", "帽子をかぶった", "眼鏡の", "小さな", "二人の"),
            ("男性", "女性", "子供", "少年", "少女", "観光客", "選手", "店員")),
    "when": (("夏の", "冬の", "春の", "秋の", "晴れた日の", "雨の日の", "休日の", "平日の"),
             ("午後", "朝", "夕方", "昼間", "夜", "正午")),
    "how": (("少し", "とても", "やや", "かなり", "すっかり", "まだ"), ("晴れ", "曇り", "寒い", "暑い", "暖かい", "穏やか")),
    "why": (("休む", "遊ぶ", "食べる", "待つ", "運ぶ", "売る", "飾る", "見る", "走る", "眠る", "乗る", "守る"),
            ("ため", "から", "ためです", "からです", "ために置かれた", "ことができるから")),
}


# ----------------------------------------------------------------------------------------------------------------
# Languages added after Japanese and Hindi (`cvil synth --preset small+zh`). Each is one `ExtraLexicon`: the words of
# the classes, colours and positions, and the VQA templates as segments (word, English alignment target). The writer
# renders them from their own random stream, after the Japanese and Hindi fields, and only when the preset names the
# language, so the default worlds stay byte-identical. Segments are split further by the language file's
# segmentation (`cvil/languages/<code>.yaml`: `char` for Chinese), every piece aligned to its segment's English word.
# Template slots: {C} the class word (aligned to {c} or {cs}), {CTR} its measure word, {COL} a colour word, {POS} a
# position (its own segments and alignments).
# ----------------------------------------------------------------------------------------------------------------

JA, HI = "ja", "hi"  # the languages of the original world (the translated VQA set and, for ja, the JVG set)


@dataclass(frozen=True)
class ExtraLexicon:
    code: str
    classes: dict                # English class -> word (Chinese nouns have no plural)
    counters: dict               # English class -> measure word of "how many" questions
    colours: dict                # English colour -> word
    positions: dict              # English position -> ((word, English word or None), ...)
    templates: dict              # English template (`Template.en`) -> ((segment, English target or None), ...)


ZH = ExtraLexicon(
    code="zh",
    classes={
        "cat": "猫", "dog": "狗", "car": "汽车", "horse": "马", "elephant": "大象", "umbrella": "伞", "bus": "公交车",
        "bird": "鸟", "chair": "椅子", "cup": "杯子", "bicycle": "自行车", "apple": "苹果", "boat": "船", "clock": "钟",
        "bottle": "瓶子", "banana": "香蕉", "cow": "牛", "sheep": "羊", "bear": "熊", "truck": "卡车", "train": "火车",
        "book": "书", "table": "桌子", "bed": "床", "kite": "风筝", "giraffe": "长颈鹿", "zebra": "斑马",
        "pizza": "披萨", "lamp": "灯", "vase": "花瓶", "laptop": "笔记本电脑", "phone": "手机",
    },
    counters={
        "cat": "只", "dog": "只", "car": "辆", "horse": "匹", "elephant": "头", "umbrella": "把", "bus": "辆",
        "bird": "只", "chair": "把", "cup": "个", "bicycle": "辆", "apple": "个", "boat": "艘", "clock": "个",
        "bottle": "个", "banana": "根", "cow": "头", "sheep": "只", "bear": "只", "truck": "辆", "train": "列",
        "book": "本", "table": "张", "bed": "张", "kite": "只", "giraffe": "只", "zebra": "匹", "pizza": "个",
        "lamp": "盏", "vase": "个", "laptop": "台", "phone": "部",
    },
    colours={
        "red": "红色", "blue": "蓝色", "green": "绿色", "yellow": "黄色", "white": "白色", "black": "黑色",
        "brown": "棕色", "gray": "灰色", "orange": "橙色", "pink": "粉色", "purple": "紫色",
    },
    positions={
        "top left": (("左", "left"), ("上", "top")), "top": (("上", "top"), ("面", None)),
        "top right": (("右", "right"), ("上", "top")), "left": (("左", "left"), ("边", None)),
        "middle": (("中间", "middle"),), "right": (("右", "right"), ("边", None)),
        "bottom left": (("左", "left"), ("下", "bottom")), "bottom": (("下", "bottom"), ("面", None)),
        "bottom right": (("右", "right"), ("下", "bottom")),
    },
    templates={  # 猫是什么颜色的？ / 猫的颜色是什么？ / 猫在哪里？ / 猫位于哪里？ / 图片里有猫吗？ / 有几只猫？ / ...
        "what color is the {c}?": (("{C}", "{c}"), ("是", "is"), ("什么", "what"), ("颜色", "color"), ("的", None),
                                   ("？", None)),
        "what is the color of the {c}?": (("{C}", "{c}"), ("的", "of"), ("颜色", "color"), ("是", "is"),
                                          ("什么", "what"), ("？", None)),
        "where is the {c}?": (("{C}", "{c}"), ("在", "is"), ("哪里", "where"), ("？", None)),
        "where is the {c} located?": (("{C}", "{c}"), ("位于", "located"), ("哪里", "where"), ("？", None)),
        "is there {a} {c} in the picture?": (("图片", "picture"), ("里", "in"), ("有", "there"), ("{C}", "{c}"),
                                             ("吗", None), ("？", None)),
        "how many {cs} are there?": (("有", "there"), ("几", "how"), ("{CTR}", "many"), ("{C}", "{cs}"), ("？", None)),
        "is the {c} {col}?": (("{C}", "{c}"), ("是", "is"), ("{COL}", "{col}"), ("的", None), ("吗", None),
                              ("？", None)),
        "what is in the {pos} of the picture?": (("图片", "picture"), ("的", "of"), ("{POS}", None), ("有", "is"),
                                                 ("什么", "what"), ("？", None)),
    },
)

#: languages `cvil synth --preset <preset>+<code>` can add, by code
EXTRA_LEXICONS: dict[str, ExtraLexicon] = {ZH.code: ZH}


def class_words(code: str) -> dict[str, str]:
    """English class -> its word in `code` (JA, HI or an `EXTRA_LEXICONS` language), e.g. for Fig. 3's object pairs."""
    if code == JA:
        return {c.en: c.ja for c in CLASSES}
    if code == HI:
        return {c.en: c.hi for c in CLASSES}
    if code in EXTRA_LEXICONS:
        return dict(EXTRA_LEXICONS[code].classes)
    raise KeyError(f"the synthetic lexicon has no {code!r} words (it has {', '.join([JA, HI, *EXTRA_LEXICONS])})")
