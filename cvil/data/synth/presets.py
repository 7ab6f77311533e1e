"""Presets of the synthetic world: how big it is, how hard it is, and how noisy its annotators and detector are.

`small` is the default, world v3: sized after the facts in DESIGN.md §3 (≤ 12 regions and tags, 16 classes, 8 colours,
a mix dominated by colour and "where is the X?" questions, ~6k translated and ~2k "real" Japanese training
questions), so that a hidden-64 × 4-layer teacher can learn it and the whole paper grid runs in minutes on 2 CPU
cores, and with the paper's information structure: the teacher first learns from an English-only corpus over 6,000
scenes (~36k questions) that no student sees. `small-v2` is the default before it (no corpus, ~12k translated
questions), kept file for file so that the tables made on it stay reproducible.
`tiny` is for tests (seconds; some scenes over 50 regions so truncation is exercised). `medium` is larger and mixes in
the harder question types. `<preset>+zh` (e.g. `small+zh`) adds Chinese questions and alignments (`get_preset`); `<preset>@teacher=N`
changes a data size (`KNOBS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cvil.errors import UsageError
from cvil.suggest import did_you_mean, unknown_choice


@dataclass(frozen=True)
class Preset:
    name: str
    n_classes: int                      # first N classes of the lexicon
    n_colours: int                      # first N colours of the lexicon
    feat_dim: int                       # region feature size (the real one is 2054); last 6 dims are the box
    regions_small: tuple[int, int]      # (min, max) regions of an ordinary scene
    regions_large: tuple[int, int]      # (min, max) regions of a "crowded" scene (over 50: truncation)
    large_scene_frac: float             # share of crowded scenes
    max_tags: int                       # cap on detector tags per image
    # VQA-like English set (and its ja/hi translations): images per split, questions per image
    vqa_images: dict = field(default_factory=dict)
    vqa_q_per_image: int = 6
    # English question mix (type -> weight); colour + position must dominate for learnability (DESIGN §3)
    vqa_mix: dict = field(default_factory=dict)
    # JVG-like Japanese set: images per split (8 QA per image)
    jvg_images: dict = field(default_factory=dict)
    jvg_q_per_image: int = 8
    jvg_mix: dict = field(default_factory=dict)
    jvg_coverage: float = 0.75           # top-K answer vocabulary chosen to cover this share of train answers
    # annotators: per-question agreement drawn uniformly from this range
    agree_range: tuple[float, float] = (0.55, 1.0)
    answer_min_count: int = 9           # VQA: answers seen >= this often in train+val annotations become labels
    # detector
    tag_miss: float = 0.12              # a region's object is not reported
    tag_false_pos: float = 0.35         # chance per image of one hallucinated tag (a second one at half the chance)
    # feature noise (class/colour prototypes have unit variance per dim)
    colour_scale: float = 0.9
    size_scale: float = 0.3
    feat_noise: float = 0.35
    # scale of the whole appearance part (prototypes + noise) relative to the 6 box dims in [0, 1]: at 1.0 the box
    # is a few percent of the feature's energy and a from-scratch teacher needs thousands of steps to read positions
    body_scale: float = 1.0
    # box centres: uniform inside their 3 x 3 cell (None), or within ± this of the cell centre (clearer positions)
    position_jitter: float | None = None
    # weight of a per-cell prototype in the appearance part: position then also shows in the features' body, which a
    # small from-scratch teacher learns to read as fast as colour (from the 6 box dims alone it barely learns it)
    cell_scale: float = 0.0
    # alignment noise in `ja-en` / `hi-en` (the `gold-*` fields stay clean)
    align_drop: float = 0.04
    align_shift: float = 0.03
    string_idx_frac: float = 0.05       # rows whose en_idx are stored as strings (the reference allows it)
    # tokenisers
    teacher_vocab: int = 600            # caps; the teacher keeps all English words whole
    student_vocab: int = 1200
    student_split_share: float = 0.3    # share of tag words the student splits into several pieces
    teacher_accuracy_target: float = 0.85
    # languages translated besides Japanese and Hindi (codes of `lexicon.EXTRA_LEXICONS`), from their own random
    # streams: off by default, because their fields and texts change the QLA files and the student tokenizer
    # (`get_preset("small+zh")`)
    languages: tuple[str, ...] = ()
    # World v3: the teacher's English-only pre-training corpus (`pretrain/`), images per split over scenes of their
    # own (the stand-in for OSCAR+'s 8.85M image-text pairs before its VQA fine-tuning): never translated and never
    # given to AUG or BASELINE, so distillation can hand the student what only the teacher saw. Empty = no corpus
    # (world v2); drawn from streams of its own after everything else, so the student's files do not depend on it.
    teacher_images: dict = field(default_factory=dict)
    teacher_q_per_image: int = 6
    # attributes (colour, size), relations (position, what-is-where), counts and tag grounding (existence)
    # (colour and position still dominate, as in `vqa_mix`: with 40 % of them a from-scratch teacher stayed on the
    # answer prior for 2,250 steps, 47 % val accuracy; with 65 % it reached 62 % and then 69 % on English VQA)
    teacher_mix: dict = field(default_factory=lambda: {
        "color": 0.42, "position": 0.38, "size": 0.08, "what_at": 0.06, "count": 0.03, "exist": 0.03})


# World v2 (the default before world v3, and the world of the tables committed before it): kept as it was.
_SMALL_V2 = Preset(
    name="small-v2", n_classes=16, n_colours=8, feat_dim=64,
    regions_small=(3, 8), regions_large=(3, 8), large_scene_frac=0.0, max_tags=10,
    vqa_images={"train": 2000, "val": 250, "test": 250}, vqa_q_per_image=6,
    vqa_mix={"color": 0.45, "position": 0.40, "exist": 0.08, "count": 0.07},
    jvg_images={"train": 250, "val": 40, "test": 120},
    jvg_mix={"color": 0.33, "position": 0.24, "count": 0.1, "size": 0.08, "what": 0.07,
             "who": 0.05, "when": 0.05, "how": 0.04, "why": 0.04},
    answer_min_count=9, teacher_vocab=600, student_vocab=1500, body_scale=0.25, position_jitter=0.06, cell_scale=0.9,
    jvg_coverage=0.8,               # the scene phrases make a long tail: 0.8 of train covers ≈ 74 % of test
)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny", n_classes=10, n_colours=6, feat_dim=32,
        regions_small=(4, 20), regions_large=(51, 64), large_scene_frac=0.35, max_tags=30,
        vqa_images={"train": 40, "val": 12, "test": 12}, vqa_q_per_image=5,
        vqa_mix={"color": 0.45, "position": 0.37, "exist": 0.1, "count": 0.08},
        jvg_images={"train": 16, "val": 6, "test": 8},
        jvg_mix={"color": 0.33, "position": 0.24, "count": 0.1, "size": 0.08, "what": 0.07,
                 "who": 0.05, "when": 0.05, "how": 0.04, "why": 0.04},
        answer_min_count=2, teacher_vocab=400, student_vocab=800,
    ),
    # World v3, the default: world v2's scenes, questions and JVG-like set, a translated set half its size, and a
    # teacher that first learns from an English-only corpus over six times as many scenes as the translated set has
    # (the paper's information structure: OSCAR+'s pre-training data >> the 647k translated questions; JVG smaller)
    "small": replace(_SMALL_V2, name="small", vqa_images={"train": 1000, "val": 250, "test": 250},
                     teacher_images={"train": 6000, "val": 200}),
    "small-v2": _SMALL_V2,
    "medium": Preset(
        name="medium", n_classes=32, n_colours=11, feat_dim=128,
        regions_small=(10, 40), regions_large=(51, 100), large_scene_frac=0.25, max_tags=30,
        vqa_images={"train": 8000, "val": 1000, "test": 1000}, vqa_q_per_image=6,
        vqa_mix={"color": 0.32, "position": 0.26, "exist": 0.1, "count": 0.1, "is_color": 0.1, "what_at": 0.12},
        jvg_images={"train": 1500, "val": 200, "test": 600},
        jvg_mix={"color": 0.3, "position": 0.22, "count": 0.12, "size": 0.08, "what": 0.1,
                 "who": 0.05, "when": 0.05, "how": 0.04, "why": 0.04},
        answer_min_count=9, teacher_vocab=1500, student_vocab=3000, teacher_accuracy_target=0.7,
    ),
}

DEFAULT_PRESET = "small"

# `small@teacher=0,mvqa=2000`: a preset with its data sizes changed (train images of the teacher's corpus, of the
# translated set, of the JVG-like set), the knobs of world v3's experiments; the name, knobs included, is the world's
# preset in world.json
KNOB_JOIN = "@"
KNOBS = {"teacher": "teacher_images", "mvqa": "vqa_images", "jvg": "jvg_images"}


LANGUAGE_JOIN = "+"  # `small+zh`: the preset `small` with Chinese questions and alignments added


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a UsageError (a ValueError) that suggests the closest name.

    `<preset>+<code>[+<code>...]` is the preset with those languages of `lexicon.EXTRA_LEXICONS` added (each also
    needs a language file, `cvil.languages`); the name, with its languages, is the world's preset in world.json."""
    from cvil.data.synth.lexicon import EXTRA_LEXICONS

    named, _, knobs = name.partition(KNOB_JOIN)
    base, *extra = named.split(LANGUAGE_JOIN)
    try:
        preset = PRESETS[base]
    except KeyError:
        raise UsageError(unknown_choice("synth preset", base, PRESETS)) from None
    if knobs:
        preset = replace(_with_knobs(preset, knobs, name), name=name)
    if not extra:
        return preset
    for code in extra:
        if code not in EXTRA_LEXICONS:
            raise UsageError(f"{name}: unknown language of the synthetic lexicon {code!r}"
                             f"{did_you_mean(code, EXTRA_LEXICONS, cutoff=0.5)} (known: {', '.join(EXTRA_LEXICONS)}; "
                             "a language the synthetic world can add needs an ExtraLexicon in "
                             "cvil/data/synth/lexicon.py)")
    if len(set(extra)) != len(extra):
        raise UsageError(f"synth preset {name!r} names a language twice")
    from cvil.languages import get_language

    for code in extra:
        get_language(code)  # its language file: segmentation, fields and joiner of the rendering
    return replace(preset, name=name, languages=tuple(extra))


def _with_knobs(preset: Preset, knobs: str, name: str) -> Preset:
    """`preset` with the train image counts of `teacher=N,mvqa=N,jvg=N` (a UsageError naming the bad knob)."""
    changes = {}
    for item in knobs.split(","):
        knob, eq, value = item.partition("=")
        if knob not in KNOBS:
            raise UsageError(f"synth preset {name!r}: unknown knob {knob!r}{did_you_mean(knob, KNOBS, cutoff=0.5)} "
                             f"(knobs: {', '.join(f'{k}=N' for k in KNOBS)})")
        if not eq or not value.isdigit() or (knob != "teacher" and int(value) == 0):
            raise UsageError(f"synth preset {name!r}: {knob} needs a whole number of train images"
                             f"{' (at least 1)' if knob != 'teacher' else ''}, got {value!r}")
        field_name = KNOBS[knob]
        if int(value) == 0:
            changes[field_name] = {}
        else:
            val = dict(getattr(preset, field_name)) or {"val": max(1, int(value) // 30)}
            changes[field_name] = {**val, "train": int(value)}
    return replace(preset, **changes)
