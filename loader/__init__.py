"""Turning a function's source into what Sluice needs, without Flask and without running it in the caller.

See loader/CONTRACT.md for what the web app may rely on.
"""

from loader.client import (
    clear_cache,
    configure,
    load_function,
    shutdown,
    start,
    stats,
    validate_valves,
)
from loader.connection import protect_server_process
from loader.frontmatter import parse_frontmatter
from loader.imports import rewrite_imports
from loader.requirements import parse_requirements
from loader.results import LoadError, LoadResult, ValvesResult
from loader.runtime.calls import METHODS as RUN_METHODS
from loader.runtime.client import RunCall, RunResult, retire_workers, run_function, run_function_collect
from loader.seed import start as start_seed
from loader.seed import stop as stop_seed

__all__ = [
    "RUN_METHODS",
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
    "retire_workers",
    "rewrite_imports",
    "run_function",
    "run_function_collect",
    "shutdown",
    "start",
    "start_seed",
    "stats",
    "stop_seed",
    "validate_valves",
]
