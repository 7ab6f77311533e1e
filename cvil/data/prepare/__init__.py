"""Builders of the release's data layout from public downloads (`cvil data prepare-jvg`, `add-language`, `hindi-classes`)."""
