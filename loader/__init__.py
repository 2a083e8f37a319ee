"""Turning a function's source into what Sluice needs, without Flask and without running it in the caller.

See loader/CONTRACT.md for what the web app may rely on.
"""

from loader.client import (
    clear_cache,
    configure,
    load_function,
    protect_server_process,
    shutdown,
    start,
    stats,
    validate_valves,
)
from loader.frontmatter import parse_frontmatter
from loader.imports import rewrite_imports
from loader.requirements import parse_requirements
from loader.results import LoadError, LoadResult, ValvesResult
from loader.runtime.client import RunCall, RunResult, run_function, run_function_collect

__all__ = [
    "LoadError",
    "LoadResult",
    "RunCall",
    "RunResult",
    "ValvesResult",
    "clear_cache",
    "configure",
    "load_function",
    "parse_frontmatter",
    "parse_requirements",
    "protect_server_process",
    "rewrite_imports",
    "run_function",
    "run_function_collect",
    "shutdown",
    "start",
    "stats",
    "validate_valves",
]
