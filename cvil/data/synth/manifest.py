"""The synthetic world's manifest (`ROOT/world.json`, written last by `cvil synth`) and the identity it gives a world
in run names and the `cvil.world` tag. Below the training layer, so run metadata and the world builder share it."""

from __future__ import annotations

from pathlib import Path

# what the presets mean: 1.2 is world v3 (`small` has the teacher's English-only corpus; `small-v2` is 1.1's `small`,
# file for file); a world made by another version is refused rather than reused under a name that now means more
GENERATOR_VERSION = "1.2"


def world_identity(preset: str, seed: int = 0) -> str:
    """What tells two synthetic worlds apart in run names and the `cvil.world` tag: the preset, and the world's seed
    when it is not the default 0 (`small`, `tiny`, `small-w3`)."""
    return preset if int(seed) == 0 else f"{preset}-w{int(seed)}"


def read_world_manifest(root: str | Path) -> dict:
    """The synthetic world's manifest `root/world.json` (written last by `cvil synth`); a truncated or damaged one is
    a `CvilError` naming it and saying to rebuild the world (what it describes cannot be trusted)."""
    from cvil.data.errors import DataFormatError
    from cvil.data.json_file import load_json
    from cvil.errors import CvilError

    manifest = Path(root) / "world.json"
    rebuild = f"rebuild the world: delete {root} and run the command again"
    try:
        built = load_json(manifest, "the synthetic world's manifest")
    except DataFormatError as exc:
        raise CvilError(f"{exc} (a truncated or damaged world manifest); {rebuild}") from None
    if not isinstance(built, dict):
        raise CvilError(f"{manifest}: top level: expected the synthetic world's manifest (a JSON object), got "
                        f"{type(built).__name__}; {rebuild}")
    return built
