"""Leaderboards built only from result files: tables, plots, a static page, with scores and significance."""

from evalkit.leaderboard.build import BuildReport, build_leaderboard, write_references
from evalkit.leaderboard.collect import Entry, Suite, collect

__all__ = ["BuildReport", "Entry", "Suite", "build_leaderboard", "collect", "write_references"]
