"""What every baseline reports: a figure, and the line a child process prints it on."""

from __future__ import annotations

from typing import Final

Figure = float | str
"""A measured figure, or "n/a (reason)" when it could not be measured."""

RESULT_MARK: Final = "pp-bench-result "
"""Prefix of a baseline child's answer line (Faust and Quix write to stdout too)."""
