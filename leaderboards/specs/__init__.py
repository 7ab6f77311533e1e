"""Table specs as data: one YAML per paper table (a package only so the YAMLs ship with the wheel)."""
