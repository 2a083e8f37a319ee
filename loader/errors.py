"""Turning whatever a function's code raised into a structured load error.

This module runs inside the isolated child as well as in the caller, so it imports nothing beyond the standard
library and the frontmatter reader (itself standard library only), at import: once function code runs, the child
can no longer import from the repository. It produces plain dicts (`{"type", "message", "line", "column"}`);
`loader.results.LoadError` wraps them.
"""

from __future__ import annotations

import ast
import re
import signal
from types import TracebackType

from loader.frontmatter import parse_frontmatter  # standard library only, like this module
from loader.protocol import error

MAX_MESSAGE = 4000

# Import names whose distribution on PyPI is called something else. Anything not listed is assumed to be published
# under its own top-level name, with underscores spelled as dashes (pip treats both alike).
PACKAGE_FOR_MODULE = {
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "google.genai": "google-genai",
    "google.generativeai": "google-generativeai",
    "google.cloud.storage": "google-cloud-storage",
    "google.cloud.aiplatform": "google-cloud-aiplatform",
    "google.auth": "google-auth",
    "google.oauth2": "google-auth",
    "google.protobuf": "protobuf",
    "googleapiclient": "google-api-python-client",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "dotenv": "python-dotenv",
    "dateutil": "python-dateutil",
    "jwt": "PyJWT",
    "jose": "python-jose",
    "Crypto": "pycryptodome",
    "Cryptodome": "pycryptodomex",
    "fitz": "PyMuPDF",
    "magic": "python-magic",
    "serial": "pyserial",
    "OpenSSL": "pyOpenSSL",
    "attr": "attrs",
    "git": "GitPython",
    "telegram": "python-telegram-bot",
    "multipart": "python-multipart",
    "MySQLdb": "mysqlclient",
    "psycopg2": "psycopg2-binary",
    "duckduckgo_search": "duckduckgo-search",
    "youtube_transcript_api": "youtube-transcript-api",
    "faiss": "faiss-cpu",
    "Levenshtein": "python-Levenshtein",
    "websocket": "websocket-client",
    "socks": "PySocks",
    "win32api": "pywin32",
    "zmq": "pyzmq",
    "mcp": "mcp",
    "lxml": "lxml",
    "markdownify": "markdownify",
    "pypdf": "pypdf",
    "PyPDF2": "PyPDF2",
    "newspaper": "newspaper3k",
    "readability": "readability-lxml",
    "sentence_transformers": "sentence-transformers",
    "transformers": "transformers",
    "torch": "torch",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "markdown_it": "markdown-it-py",
    "socketio": "python-socketio",
    "engineio": "python-engineio",
    "opensearchpy": "opensearch-py",
    "grpc": "grpcio",
    "nacl": "PyNaCl",
    "dns": "dnspython",
    "bson": "pymongo",
    "mysql.connector": "mysql-connector-python",
    "speech_recognition": "SpeechRecognition",
    "whisper": "openai-whisper",
    "tavily": "tavily-python",
    "firecrawl": "firecrawl-py",
    "weaviate": "weaviate-client",
    "discord": "discord.py",
    "Bio": "biopython",
    "vertexai": "google-cloud-aiplatform",
    "pkg_resources": "setuptools",
    "mpl_toolkits": "matplotlib",
}

# Namespace packages shared by many distributions, each named after the namespace and the next component:
# `azure.identity` is azure-identity, `azure.storage.blob` is azure-storage-blob, `google.cloud.storage` is
# google-cloud-storage. The longest namespace that holds the module decides.
NAMESPACE_PACKAGES = (
    "azure",
    "azure.ai",
    "azure.cognitiveservices",
    "azure.communication",
    "azure.keyvault",
    "azure.mgmt",
    "azure.monitor",
    "azure.search",
    "azure.storage",
    "google",
    "google.ai",
    "google.cloud",
    "opentelemetry",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
)

# What Open WebUI 0.12.4 ships for running models locally and Sluice leaves out of its own install (gigabytes, for
# the few functions that use them): a function needing one gets the same install path as any other package.
HEAVY_OPEN_WEBUI_PACKAGES = frozenset(
    {
        "accelerate",
        "chromadb",
        "einops",
        "faster-whisper",
        "onnxruntime",
        "opencv-python",
        "opencv-python-headless",
        "scikit-learn",
        "scipy",
        "sentence-transformers",
        "sentencepiece",
        "torch",
        "transformers",
    }
)

# How an admin installs a missing package, in the product's own words (the console's button and the API routes).
INSTALL_ACTION = (
    'install it with "Install missing" under Requirements on the function\'s page, or through the API with '
    "POST /api/v1/functions/id/{id}/requirements/install (saved code) or "
    'POST /api/v1/functions/requirements/install {"content": <the code>} (unsaved code); '
    "installs must be allowed by the operator (SLUICE_ALLOW_PIP_INSTALL=true)"
)

_NAMESPACE_MISS = re.compile(r"cannot import name '(\w+)' from '([\w.]+)' \(unknown location\)")


def _known_package(module_name: str) -> str | None:
    """The distribution of `module_name` by the tables above, or None when they do not say."""
    parts = module_name.split(".")
    for end in range(len(parts), 0, -1):
        known = PACKAGE_FOR_MODULE.get(".".join(parts[:end]))
        if known:
            return known
    for end in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:end]) in NAMESPACE_PACKAGES:
            return "-".join(parts[: end + 1]).replace("_", "-")
    return None


def package_for_module(module_name: str) -> str:
    """Name the distribution that provides `module_name`, e.g. `PIL.Image` -> `Pillow`."""
    return _known_package(module_name) or module_name.split(".")[0].replace("_", "-")


def safe_str(value: object, limit: int = MAX_MESSAGE) -> str:
    """`str(value)` that never raises and never grows without bound."""
    try:
        text = str(value)
    except BaseException:  # a hostile __str__ must not break error reporting
        try:
            text = object.__repr__(value)
        except BaseException:
            text = "<unprintable>"
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


def _position(tb: TracebackType | None, filename: str) -> tuple[int | None, int | None]:
    """Line and 1-based column of the innermost traceback frame that runs in `filename`."""
    line = column = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename:
            line, column = tb.tb_lineno, None
            try:
                positions = list(code.co_positions())[tb.tb_lasti // 2]
                if positions[0] == line and positions[2] is not None:
                    column = positions[2] + 1
            except (IndexError, ValueError, AttributeError):
                pass
        tb = tb.tb_next
    return line, column


def _imported_names(filename: str, line: int | None) -> list[str]:
    """Dotted names the import statement at `line` of `filename` asks for (`from a import b` gives `a.b`)."""
    if not line:
        return []
    try:
        with open(filename, encoding="utf-8", errors="surrogatepass") as source:
            tree = ast.parse(source.read(), filename)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if not node.lineno <= line <= (node.end_lineno or node.lineno):
            continue
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif node.module and not node.level:
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
            names.append(node.module)
    return names


def _missing_module(name: str, filename: str, line: int | None) -> str:
    """The most specific module the failing import wanted: `google.genai` rather than the namespace `google`."""
    wanted = [
        candidate
        for candidate in _imported_names(filename, line)
        if candidate == name or candidate.startswith(name + ".")
    ]
    for candidate in sorted(wanted, key=len, reverse=True):
        if _known_package(candidate):
            return candidate
    return name


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared_requirements(filename: str) -> set[str]:
    """Canonical names of the packages the `requirements:` line of the code's frontmatter lists."""
    try:
        with open(filename, encoding="utf-8", errors="surrogatepass") as source:
            content = source.read()
    except (OSError, ValueError):
        return set()
    value = parse_frontmatter(content).get("requirements") or ""
    names = (re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", item) for item in value.split(","))
    return {_canonical(match.group(1)) for match in names if match}


def needs_package_message(package: str, *, declared: bool) -> str:
    """The error for a missing package, naming what the admin does next: the `requirements:` line and the install."""
    message = f"this function needs the package '{package}', which is not installed. "
    if declared:
        message += f"Its `requirements:` line lists it: {INSTALL_ACTION}."
    else:
        message += (
            f"Add `requirements: {package}` to the frontmatter at the top of the code (or add {package} to the "
            f"`requirements:` line it has), then {INSTALL_ACTION}."
        )
    if _canonical(package) in HEAVY_OPEN_WEBUI_PACKAGES:
        message += (
            f" Open WebUI ships {package}; Sluice leaves it out of its own install because of its size."
        )
    return message


def _missing_package_message(exc: ImportError, filename: str, line: int | None) -> str | None:
    name = getattr(exc, "name", None)
    if isinstance(exc, ModuleNotFoundError) and name:
        if name == "open_webui" or name.startswith("open_webui."):
            return f"Open WebUI's module '{name}' is not available in Sluice"
        package = package_for_module(_missing_module(name, filename, line))
    else:
        # `from google import genai` with the namespace package present but the distribution missing.
        match = _NAMESPACE_MISS.search(safe_str(exc))
        if not match:
            return None
        package = package_for_module(f"{match.group(2)}.{match.group(1)}")
    return needs_package_message(package, declared=_canonical(package) in _declared_requirements(filename))


def describe_exception(exc: BaseException, filename: str, *, memory_mb: int | None = None) -> dict:
    """Describe `exc`, raised while loading the module stored at `filename`, as a load error dict."""
    line, column = _position(exc.__traceback__, filename)
    kind = type(exc).__name__
    text = safe_str(exc)

    if isinstance(exc, SyntaxError):
        message = safe_str(exc.msg) if exc.msg else "invalid syntax"
        if exc.filename == filename and exc.lineno:
            line, column = exc.lineno, exc.offset or None
        return error(kind, message, line, column)
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or isinstance(code, int):
            message = f"the code exited (status {code or 0}) while loading"
        else:
            message = f"the code exited (status 1) while loading: {safe_str(code)}"
        return error("Exit", message, line, column)
    if isinstance(exc, MemoryError):
        limit = f"the {memory_mb} MiB of" if memory_mb else "the"
        message = f"the code needed more than {limit} memory a function may use while loading (SLUICE_LOAD_MEMORY_MB)"
        return error("MemoryError", message, line, column)
    if isinstance(exc, ImportError):
        missing = _missing_package_message(exc, filename, line)
        if missing:
            return error(kind, missing, line, column)
    if not text:
        text = f"the code raised {kind} while loading"
    return error(kind, text, line, column)


def exit_status_error(returncode: int) -> dict:
    """The error for a child that ended without answering; `returncode` as `os.waitstatus_to_exitcode` gives it."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGXCPU:
            message = "the code used more CPU time than allowed while loading"
            return error("CPULimit", message)
        message = f"the code was killed by {name} while loading"
        return error("Killed", message)
    message = f"the code exited (status {returncode}) while loading"
    return error("Exit", message)
