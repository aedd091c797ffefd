"""incbench: a benchmark harness for incremental tuning methods of recommender models.

Read ARCHITECTURE.md for the map of stages, modules and plugin interfaces.
"""

__version__ = "0.1.0"


class IncbenchError(Exception):
    """An error the user can fix: the message names the problem and the fix."""
