"""Leaderboards: the paper tables regenerated from the tracking store."""
