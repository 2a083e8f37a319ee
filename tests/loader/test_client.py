"""What load_function and validate_valves report about a function's code: type, toggle, schemas, errors, cache."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid

import pytest

SMALL_FILTER = '''
"""
title: Small Filter
version: 1.2.0
"""
from pydantic import BaseModel, Field


class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, description="Order among filters")
        prefix: str = "> "

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict) -> dict:
        return body
'''


def unique(text: str) -> str:
    """The same code with a distinct comment, so the result cache cannot answer it."""
    return f"{text}\n# {uuid.uuid4().hex}\n"


def test_small_filter_with_valves(loader_fast):
    content = unique(SMALL_FILTER.lstrip("\n"))
    result = loader_fast.load_function(content)

    assert result.ok, result.error
    assert result.type == "filter"
    assert result.toggle is False
    assert result.manifest == {"title": "Small Filter", "version": "1.2.0"}
    assert result.content_hash == hashlib.sha256(content.encode()).hexdigest()
    assert result.valves_schema["properties"]["priority"] == {
        "default": 0,
        "description": "Order among filters",
        "title": "Priority",
        "type": "integer",
    }
    assert result.user_valves_schema is None
    assert result.error is None and result.valves_check is None
    json.dumps(result.to_dict())


def test_a_load_answer_says_when_the_child_received_prepared_and_described_it(loader_fast, monkeypatch):
    """The child's stamps (the system's monotonic clock) fall inside the caller's call, in order; the app's result
    does not carry them. bench/profile_load_hops.py reads them to tell the hand-offs from the child's own work."""
    import time

    from loader import client

    answers = []
    run = client._run

    def keep(request, during=None):
        header, answer = run(request, during)
        answers.append(answer)
        return header, answer

    monkeypatch.setattr(client, "_run", keep)
    began = time.monotonic()
    result = loader_fast.load_function(unique(SMALL_FILTER))
    ended = time.monotonic()
    assert result.ok, result.error
    timing = answers[0]["timing"]
    assert began < timing["received"] <= timing["prepared"] <= timing["described"] < ended
    assert "timing" not in json.dumps(result.to_dict())


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        (["Filter"], "filter"),
        (["Pipe"], "pipe"),
        (["Action"], "action"),
        (["Event"], "event"),
        (["Filter", "Pipe"], "pipe"),
        (["Event", "Action", "Filter"], "filter"),
        (["Event", "Action"], "action"),
    ],
)
def test_the_first_class_in_pipe_filter_action_event_order_decides_the_type(loader_fast, classes, expected):
    content = "\n".join(f"class {name}:\n    pass\n" for name in classes)
    result = loader_fast.load_function(unique(content))

    assert result.ok, result.error
    assert result.type == expected


@pytest.mark.parametrize(
    ("body", "toggle"),
    [
        ("class Filter:\n    toggle = True\n", True),
        ("class Filter:\n    def __init__(self):\n        self.toggle = True\n", True),
        ("class Filter:\n    toggle = 'yes'\n", True),
        ("class Filter:\n    toggle = False\n", False),
        ("class Filter:\n    def __init__(self):\n        self.toggle = 0\n", False),
        ("class Filter:\n    pass\n", False),
        ("class Pipe:\n    toggle = True\n", False),
        ("class Action:\n    toggle = True\n", False),
    ],
)
def test_toggle_is_read_from_class_or_instance_on_filters_only(loader_fast, body, toggle):
    result = loader_fast.load_function(unique(body))

    assert result.ok, result.error
    assert result.toggle is toggle


SVG_ICON = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4="


@pytest.mark.parametrize(
    ("body", "icon"),
    [
        # As real filters set it: in __init__, beside self.toggle.
        (
            f"class Filter:\n    def __init__(self):\n        self.toggle = True\n        self.icon = {SVG_ICON!r}\n",
            SVG_ICON,
        ),
        (f"class Action:\n    icon = {SVG_ICON!r}\n", SVG_ICON),
        (
            "class Pipe:\n    def __init__(self):\n        self.icon = 'https://example.com/i.png'\n",
            "https://example.com/i.png",
        ),
        # Open WebUI reads `icon_url` before `icon`.
        (
            f"class Filter:\n    icon = 'https://example.com/second.png'\n    icon_url = {SVG_ICON!r}\n",
            SVG_ICON,
        ),
        (
            "class Filter:\n    icon_url = 3\n    icon = 'https://example.com/i.png'\n",
            "https://example.com/i.png",
        ),
        ("class Filter:\n    pass\n", None),
        ("class Filter:\n    icon = b'data:image/png;base64,AA=='\n", None),
        ("class Filter:\n    icon = ['data:image/png;base64,AA==']\n", None),
        ("class Filter:\n    icon = '   '\n", None),
        # Unchecked here: whether it is safe to show is the app's business.
        ("class Filter:\n    icon = 'javascript:alert(1)'\n", "javascript:alert(1)"),
    ],
)
def test_the_instances_icon_is_reported(loader_fast, body, icon):
    result = loader_fast.load_function(unique(body))

    assert result.ok, result.error
    assert result.icon == icon
    assert result.to_dict()["icon"] == icon


def test_a_hostile_icon_is_left_out_and_the_load_goes_on(loader_fast, source):
    from loader.results import MAX_ICON_CHARS

    result = loader_fast.load_function(
        source(
            f"""
            class Filter:
                icon_url = "data:image/png;base64," + "A" * {MAX_ICON_CHARS}

                @property
                def icon(self):
                    raise ValueError("no icon today")


            class Action:
                pass
            """
        )
    )
    assert result.ok, result.error
    assert result.type == "filter"
    assert result.icon is None
    assert any(w.startswith("icon_url is ignored: 262166 characters") for w in result.warnings), (
        result.warnings
    )
    assert "icon could not be read: no icon today" in result.warnings

    # A str subclass is read as the plain text it holds; none of its own methods run.
    result = loader_fast.load_function(
        source(
            """
            class Sneaky(str):
                def __str__(self):
                    raise RuntimeError("no")

                def __len__(self):
                    return 0

                def strip(self, *args):
                    return ""


            class Filter:
                def __init__(self):
                    self.icon = Sneaky("https://example.com/i.png")
            """
        )
    )
    assert result.ok, result.error
    assert result.icon == "https://example.com/i.png" and type(result.icon) is str


def test_a_garbled_answer_cannot_smuggle_in_a_huge_icon():
    from loader.results import MAX_ICON_CHARS, LoadResult

    answer = {"ok": True, "type": "filter", "icon": "A" * (MAX_ICON_CHARS + 1)}
    assert LoadResult.from_answer(answer, content_hash="x", manifest={}).icon is None
    answer["icon"] = {"not": "text"}
    assert LoadResult.from_answer(answer, content_hash="x", manifest={}).icon is None
    answer["icon"] = "https://example.com/i.png"
    assert LoadResult.from_answer(answer, content_hash="x", manifest={}).icon == "https://example.com/i.png"
    answer["ok"] = False
    assert LoadResult.from_answer(answer, content_hash="x", manifest={}).icon is None


def test_module_runs_as_a_real_module_with_file_doc_and_name(loader_fast, source):
    content = source('''
        """
        title: Self Reader
        """
        import os
        import sys

        from pydantic import BaseModel

        with open(__file__, encoding="utf-8") as own:
            OWN_SOURCE = own.read()
        DOC_TITLE = __doc__.split("title:")[1].strip()
        REGISTERED = sys.modules[__name__].__dict__ is globals()


        class Pipe:
            class Valves(BaseModel):
                source_length: int = len(OWN_SOURCE)
                doc_title: str = DOC_TITLE
                module_name: str = __name__
                registered: bool = REGISTERED
                file_in_cwd: bool = os.path.dirname(__file__) == os.getcwd()
                class_module: str = ""

            def __init__(self):
                self.valves = self.Valves(class_module=type(self).__module__)
    ''')
    result = loader_fast.load_function(content, function_id="self_reader")

    assert result.ok, result.error
    defaults = {name: prop["default"] for name, prop in result.valves_schema["properties"].items()}
    assert defaults["source_length"] == len(content)
    assert defaults["doc_title"] == "Self Reader"
    assert defaults["module_name"] == "function_self_reader"
    assert defaults["registered"] is True
    assert defaults["file_in_cwd"] is True


def test_postponed_annotations_with_nested_valves_resolve(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from __future__ import annotations

        from typing import Literal, Optional

        from pydantic import BaseModel, Field


        class Mode(BaseModel):
            name: str = "fast"


        class Filter:
            class Valves(BaseModel):
                mode: Literal["fast", "slow"] = "fast"
                limit: Optional[int] = Field(default=None, ge=1, le=10)
                tags: list[str] = Field(default_factory=list)
                secret: str = Field(default="", json_schema_extra={"input": {"type": "password"}})
                choice: str = Field(default="a", json_schema_extra={"input": {"type": "select", "options": ["a", "b"]}})

            class UserValves(BaseModel):
                enabled: bool | None = None

            def __init__(self):
                self.valves = self.Valves()
    """)
    )

    assert result.ok, result.error
    props = result.valves_schema["properties"]
    assert props["mode"]["enum"] == ["fast", "slow"]
    assert props["limit"]["anyOf"] == [{"maximum": 10, "minimum": 1, "type": "integer"}, {"type": "null"}]
    assert props["tags"] == {"items": {"type": "string"}, "title": "Tags", "type": "array"}
    assert props["secret"]["input"] == {"type": "password"}
    assert props["choice"]["input"] == {"type": "select", "options": ["a", "b"]}
    assert result.user_valves_schema["properties"]["enabled"]["anyOf"] == [
        {"type": "boolean"},
        {"type": "null"},
    ]


def test_valves_are_looked_up_on_the_function_class_not_the_module(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel

        class Valves(BaseModel):
            key: str = ""

        class Filter:
            def __init__(self):
                self.valves = Valves()
    """)
    )

    assert result.ok, result.error
    assert result.valves_schema is None


OPTIONS_FUNCTION = """
from pydantic import BaseModel, Field


class Pipe:
    class Valves(BaseModel):
        model: str = Field(default="", json_schema_extra={"input": {"type": "select", "options": "list_models"}})
        size: str = Field(default="s", json_schema_extra={"input": {"type": "select", "options": "list_sizes"}})
        broken: str = Field(default="", json_schema_extra={"input": {"type": "select", "options": "explode"}})

        @classmethod
        def list_models(cls, __user__=None):
            return ["model-for-" + (__user__ or {}).get("name", "nobody"), "shared"]

        @staticmethod
        def list_sizes():
            return ("s", "m")

        @classmethod
        def explode(cls):
            raise RuntimeError("no models today")
"""


def test_options_given_as_a_method_name_are_resolved_with_the_user(loader_fast):
    content = unique(OPTIONS_FUNCTION)
    ada = {"id": "u1", "name": "ada", "email": "ada@example.com", "role": "admin"}
    result = loader_fast.load_function(content, user=ada)

    assert result.ok, result.error
    props = result.valves_schema["properties"]
    assert props["model"]["input"] == {"type": "select", "options": ["model-for-ada", "shared"]}
    assert props["size"]["input"]["options"] == ["s", "m"]
    assert props["broken"]["input"]["options"] == []
    assert any("no models today" in warning for warning in result.warnings)


def test_user_dependent_options_are_cached_per_user(loader_fast):
    content = unique(OPTIONS_FUNCTION)
    ada = {"id": "u1", "name": "ada", "email": "ada@example.com", "role": "admin"}
    bob = {"id": "u2", "name": "bob", "email": "bob@example.com", "role": "user"}

    first = loader_fast.load_function(content, user=ada)
    jobs = loader_fast.stats()["jobs"]
    again = loader_fast.load_function(content, user=ada)
    assert loader_fast.stats()["jobs"] == jobs
    other = loader_fast.load_function(content, user=bob)
    assert loader_fast.stats()["jobs"] == jobs + 1

    assert first.valves_schema == again.valves_schema
    assert other.valves_schema["properties"]["model"]["input"]["options"] == ["model-for-bob", "shared"]


def test_options_resolved_without_a_user_are_not_served_to_a_user(loader_fast):
    content = unique(OPTIONS_FUNCTION)
    anonymous = loader_fast.load_function(content)
    ada = loader_fast.load_function(
        content, user={"id": "u1", "name": "ada", "email": "a@x", "role": "admin"}
    )

    assert anonymous.valves_schema["properties"]["model"]["input"]["options"][0] == "model-for-nobody"
    assert ada.valves_schema["properties"]["model"]["input"]["options"][0] == "model-for-ada"


def test_options_methods_get_the_user_only_by_name_as_in_open_webui(loader_fast, source):
    """`__user__` or `user` receive the user by keyword; an ordinary parameter keeps its default."""
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel, Field


        def select(method):
            return Field(default="", json_schema_extra={"input": {"type": "select", "options": method}})


        class Pipe:
            class Valves(BaseModel):
                model: str = select("get_models")
                voice: str = select("get_voices")
                both: str = select("get_both")
                loose: str = select("get_loose")

                @classmethod
                def get_models(cls, include_beta=False):
                    return ["a", "b", "beta"] if include_beta else ["a", "b"]

                @classmethod
                def get_voices(cls, user=None):
                    return ["voice-for-" + user["name"]] if user else ["nobody"]

                @staticmethod
                def get_both(__user__=None, user=None):
                    return [__user__ is user or __user__ == user, bool(user)]

                @classmethod
                def get_loose(cls, *args, **kwargs):
                    return [len(args), len(kwargs)]
        """),
        user={"id": "u1", "name": "ada", "email": "ada@example.com", "role": "admin"},
    )

    assert result.ok, result.error
    options = {name: prop["input"]["options"] for name, prop in result.valves_schema["properties"].items()}
    assert options == {
        "model": ["a", "b"],
        "voice": ["voice-for-ada"],
        "both": [True, True],
        "loose": [0, 0],
    }


# The keys of Open WebUI 0.12.4's UserModel.model_dump(), as its options methods receive them.
OPEN_WEBUI_USER_KEYS = [
    "bio",
    "created_at",
    "date_of_birth",
    "email",
    "gender",
    "id",
    "info",
    "last_active_at",
    "name",
    "oauth",
    "presence_state",
    "profile_banner_image_url",
    "profile_image_url",
    "role",
    "scim",
    "settings",
    "status_emoji",
    "status_expires_at",
    "status_message",
    "timezone",
    "updated_at",
    "username",
]


def test_options_methods_get_open_webuis_full_user_dump(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel, Field


        class Filter:
            class UserValves(BaseModel):
                keys: str = Field(default="", json_schema_extra={"input": {"type": "select", "options": "all_keys"}})
                seen: str = Field(default="", json_schema_extra={"input": {"type": "select", "options": "some"}})

                @classmethod
                def all_keys(cls, __user__=None):
                    return sorted(__user__)

                @classmethod
                def some(cls, __user__=None):
                    return [__user__[key] for key in ("id", "name", "email", "role", "settings", "profile_image_url")]
        """),
        user={"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "admin"},
    )

    assert result.ok, result.error
    properties = result.user_valves_schema["properties"]
    assert properties["keys"]["input"]["options"] == OPEN_WEBUI_USER_KEYS
    assert properties["seen"]["input"]["options"] == [
        "u1",
        "Ada",
        "ada@example.com",
        "admin",
        None,
        "/api/v1/users/u1/profile/image",
    ]


# --- the event loop function code runs under ----------------------------------------------------------------


def test_module_code_runs_with_a_running_event_loop_as_in_open_webui(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        import asyncio
        from pydantic import BaseModel, Field

        LOOP = asyncio.get_running_loop()
        _CACHE = {}


        async def warm():
            _CACHE["ready"] = True


        async def forever():
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass  # ignores cancellation: the load must still end


        TASKS = [asyncio.create_task(warm()), asyncio.create_task(forever())]
        LOCK = asyncio.Lock()


        class Pipe:
            class Valves(BaseModel):
                running: bool = LOOP.is_running()
                model: str = Field(default="", json_schema_extra={"input": {"type": "select", "options": "same"}})

                @classmethod
                def same(cls):
                    return [asyncio.get_running_loop() is LOOP]

            def __init__(self):
                self.loop = asyncio.get_running_loop()
                self.valves = self.Valves()
        """)
    )

    assert result.ok, result.error
    assert result.valves_schema["properties"]["running"]["default"] is True
    assert result.valves_schema["properties"]["model"]["input"]["options"] == [True]


def test_asyncio_run_at_import_fails_as_in_open_webui(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        import asyncio


        async def discover():
            return ["m1"]


        MODELS = asyncio.run(discover())


        class Pipe:
            pass
        """)
    )

    assert not result.ok
    assert result.error.type == "RuntimeError"
    assert result.error.line == 8
    assert "cannot be called from a running event loop" in result.error.message


def test_async_options_methods_are_awaited(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        import asyncio
        from pydantic import BaseModel, Field


        class Pipe:
            class Valves(BaseModel):
                model: str = Field(default="x", json_schema_extra={"input": {"type": "select", "options": "fetch"}})

                @classmethod
                async def fetch(cls, __user__=None):
                    await asyncio.sleep(0.01)
                    return ["x", "y", (__user__ or {}).get("role")]
        """),
        user={"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "admin"},
    )

    assert result.ok, result.error
    assert result.valves_schema["properties"]["model"]["input"]["options"] == ["x", "y", "admin"]


def test_valves_are_validated_under_the_event_loop_too(loader_fast, source):
    result = loader_fast.validate_valves(
        source("""
        import asyncio
        from pydantic import BaseModel

        asyncio.get_running_loop()


        class Filter:
            class Valves(BaseModel):
                n: int = 1
        """),
        {"n": "2"},
    )

    assert result.ok, result.errors
    assert result.values == {"n": 2}


def test_concurrent_identical_loads_run_once(loader_fast):
    content = unique("import time\ntime.sleep(0.3)\n" + SMALL_FILTER)
    jobs = loader_fast.stats()["jobs"]
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(loader_fast.load_function(content))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)

    assert loader_fast.stats()["jobs"] == jobs + 1
    assert len(results) == 4 and all(result.ok for result in results)
    results[0].valves_schema.clear()
    assert all(result.valves_schema for result in results[1:])


def test_non_json_values_in_schemas_are_made_json_safe(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        import enum

        from pydantic import BaseModel, Field


        class Colour(enum.Enum):
            RED = "red"


        class Action:
            class Valves(BaseModel):
                tags: set[str] = Field(default={"b", "a"})
                ratio: float = Field(default=1.0, json_schema_extra={"hint": float("nan"), "pick": {Colour.RED, 2},
                                                                     "raw": b"bytes"})
    """)
    )

    assert result.ok, result.error
    json.dumps(result.to_dict(), allow_nan=False)
    props = result.valves_schema["properties"]
    assert props["tags"]["default"] == ["a", "b"]
    assert props["ratio"]["hint"] is None
    assert props["ratio"]["raw"] == "bytes"
    assert sorted(map(str, props["ratio"]["pick"])) == ["2", "red"]


def test_a_schema_pydantic_cannot_build_loses_the_form_not_the_function(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel, Field

        class Action:
            class Valves(BaseModel):
                ratio: float = Field(default=1.0, json_schema_extra={"obj": object})
    """)
    )

    assert result.ok, result.error
    assert result.valves_schema is None
    assert result.warnings and result.warnings[0].startswith("Valves: its JSON schema could not be built")


def test_json_safe_copes_with_any_value():
    from loader.json_values import json_safe

    cycle = []
    cycle.append(cycle)
    value = {1: {"a", "b"}, "f": float("inf"), "o": object(), "c": cycle, ("t",): b"\xff"}

    safe = json_safe(value)
    json.dumps(safe, allow_nan=False)
    assert safe["1"] == ["a", "b"]
    assert safe["f"] is None
    assert safe["o"].startswith("<object object")
    assert safe["('t',)"] == "\ufffd"


def test_pydantic_v1_style_field_arguments_still_load(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel, Field


        class Filter:
            class Valves(BaseModel):
                mode: str = Field(default="a", extra={"x": 1})
                level: str = Field(default="low", enum=["low", "high"])
    """)
    )

    assert result.ok, result.error
    assert set(result.valves_schema["properties"]) == {"mode", "level"}
    assert result.valves_schema["properties"]["level"]["enum"] == ["low", "high"]
    assert [warning.split(":")[0] for warning in result.warnings] == ["PydanticDeprecatedSince20"] * 2


# --- errors ----------------------------------------------------------------------------------------------------


def test_syntax_error_reports_line_and_column(loader_fast):
    content = "x = 1\n\ndef broken(:\n    pass\n"
    result = loader_fast.load_function(unique(content))

    assert not result.ok
    assert result.type is None
    assert result.error.type == "SyntaxError"
    assert result.error.line == 3
    assert result.error.column == 12
    assert result.error.detail == f"SyntaxError: {result.error.message} (line 3)"
    assert result.to_dict()["error"]["detail"] == result.error.detail


def test_exception_at_import_points_at_the_innermost_line_in_the_function(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        import json

        def helper():
            return json.loads("{not json")

        SETTINGS = helper()

        class Filter:
            pass
    """)
    )

    assert not result.ok
    assert result.error.type == "JSONDecodeError"
    assert result.error.line == 4
    assert "Expecting property name" in result.error.message


def test_no_function_class(loader_fast):
    result = loader_fast.load_function(unique("class Tools:\n    pass\n"))

    assert not result.ok
    assert result.error.type == "NoFunctionClass"
    assert result.error.message == "No Pipe, Filter, Action or Event class found"
    assert result.error.line is None


def test_instantiation_failure(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        class Pipe:
            def __init__(self):
                self.ready = False
                raise ValueError("needs configuration")
    """)
    )

    assert not result.ok
    assert result.error.type == "ValueError"
    assert result.error.line == 4
    assert result.error.message == "creating Pipe() failed: needs configuration"


@pytest.mark.parametrize(
    ("statement", "package", "kind"),
    [
        ("import sklearn.linear_model", "scikit-learn", "ModuleNotFoundError"),
        ("import cv2", "opencv-python", "ModuleNotFoundError"),
        # The google and azure namespaces exist (google-auth, azure-identity are installed), so a missing
        # distribution in them is an ImportError from the namespace, as in Open WebUI.
        ("from google import genai", "google-genai", "ImportError"),
        ("import google.genai", "google-genai", "ModuleNotFoundError"),
        ("from google.cloud import bigquery", "google-cloud-bigquery", "ImportError"),
        ("from azure.ai.inference import ChatCompletionsClient", "azure-ai-inference", "ModuleNotFoundError"),
        ("import azure.cosmos", "azure-cosmos", "ModuleNotFoundError"),
        ("from imageio_ffmpeg import get_ffmpeg_exe", "imageio-ffmpeg", "ModuleNotFoundError"),
        ("import langgraph.graph", "langgraph", "ModuleNotFoundError"),
    ],
)
def test_missing_module_names_the_package_to_install(loader_fast, statement, package, kind):
    result = loader_fast.load_function(unique(f"import os\n{statement}\n\nclass Pipe:\n    pass\n"))

    assert not result.ok
    assert result.error.type == kind
    assert result.error.message.startswith(
        f"this function needs the package '{package}', which is not installed. "
    )
    assert '"Install missing"' in result.error.message
    assert result.error.line == 2


def test_open_webui_modules_come_from_the_compatibility_layer(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from open_webui.models.users import Users
        from open_webui.utils.misc import get_last_user_message

        class Filter:
            def inlet(self, body):
                return body
    """)
    )

    assert result.ok, result.error


@pytest.mark.parametrize(
    ("code", "kind", "message"),
    [
        ("import sys\nsys.exit(3)", "Exit", "the code exited (status 3) while loading"),
        ("raise SystemExit", "Exit", "the code exited (status 0) while loading"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt", "the code raised KeyboardInterrupt while loading"),
        ("raise GeneratorExit('bye')", "GeneratorExit", "bye"),
        ("class Stop(BaseException):\n    pass\nraise Stop('custom')", "Stop", "custom"),
    ],
)
def test_base_exceptions_are_reported_not_fatal(loader_fast, code, kind, message):
    result = loader_fast.load_function(unique(code + "\nclass Pipe:\n    pass\n"))

    assert not result.ok
    assert result.error.type == kind
    assert result.error.message == message
    assert result.error.line == code.count("\n") + 1


def test_deep_recursion(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        def down(n):
            return down(n + 1)

        down(0)
    """)
    )

    assert not result.ok
    assert result.error.type == "RecursionError"
    assert result.error.line == 2


def test_exception_whose_str_fails_is_still_reported(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        class Weird(Exception):
            def __str__(self):
                raise RuntimeError("no")

        raise Weird()
    """)
    )

    assert not result.ok
    assert result.error.type == "Weird"
    assert result.error.line == 5


def test_huge_valves_schema_is_refused_clearly(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel, Field

        class Filter:
            class Valves(BaseModel):
                notes: str = Field(default="", json_schema_extra={"examples": ["x" * 1000] * 3000})
    """)
    )

    assert not result.ok
    assert result.error.type == "ResultTooLarge"
    assert "valves schema" in result.error.message


def test_too_large_valves_values_are_named_as_such(loader_fast):
    """A 2 MiB valve value makes the answer too large; the message must blame the values, not the schema."""
    big = {"prefix": "x" * (2 * 1024 * 1024)}

    checked = loader_fast.validate_valves(unique(SMALL_FILTER), big)
    loaded = loader_fast.load_function(unique(SMALL_FILTER), valves=big)

    for result in (checked, loaded):
        assert not result.ok
        assert result.error.type == "ResultTooLarge"
        assert result.error.message.startswith("the valves values are too large to store (")
        assert "schema" not in result.error.message


def test_warnings_do_not_fail_the_load_and_are_reported(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        import warnings

        warnings.warn("this filter is old", UserWarning)

        class Filter:
            pass
    """)
    )

    assert result.ok, result.error
    assert result.warnings == ["UserWarning: this filter is old (line 3)"]


def test_output_is_captured(loader_fast):
    result = loader_fast.load_function(unique("print('hello from the function')\nclass Filter:\n    pass\n"))

    assert result.ok
    assert result.output == "hello from the function\n"


# --- valves validation -----------------------------------------------------------------------------------------

VALIDATED = """
from typing import Literal, Optional

from pydantic import BaseModel, Field, field_validator


class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, ge=0)
        mode: Literal["a", "b"] = "a"
        note: Optional[str] = None
        api_key: str = ""

        @field_validator("api_key")
        @classmethod
        def key_shape(cls, value):
            if value and not value.startswith("sk-"):
                raise ValueError("the key must start with sk-")
            return value

    class UserValves(BaseModel):
        enabled: bool = True
"""


def test_validate_valves_coerces_drops_none_and_keeps_only_what_was_set(loader_fast):
    result = loader_fast.validate_valves(unique(VALIDATED), {"priority": "5", "note": None, "unknown": 1})

    assert result.ok, result.errors
    assert result.values == {"priority": 5}
    assert result.errors == [] and result.error is None
    json.dumps(result.to_dict())


def test_validate_valves_reports_each_field_error(loader_fast):
    result = loader_fast.validate_valves(unique(VALIDATED), {"priority": -1, "mode": "c", "api_key": "nope"})

    assert not result.ok
    by_field = {tuple(error["loc"]): error for error in result.errors}
    assert set(by_field) == {("priority",), ("mode",), ("api_key",)}
    assert by_field[("priority",)]["type"] == "greater_than_equal"
    assert "sk-" in by_field[("api_key",)]["msg"]
    assert all(set(error) == {"loc", "msg", "type"} for error in result.errors)
    json.dumps(result.to_dict())


def test_validate_user_valves_and_missing_class(loader_fast):
    content = unique(VALIDATED)
    assert loader_fast.validate_valves(content, {"enabled": "false"}, kind="user_valves").values == {
        "enabled": False
    }

    missing = loader_fast.validate_valves(unique("class Pipe:\n    pass\n"), {"a": 1}, kind="user_valves")
    assert not missing.ok
    assert missing.error.type == "NoValvesClass"


SECRETS = """
from typing import Optional

import pydantic.v1
from pydantic import BaseModel, Field, SecretBytes, SecretStr


class Endpoint(BaseModel):
    url: str = ""
    token: SecretStr = SecretStr("")


class Pipe:
    class Valves(BaseModel):
        api_key: SecretStr = Field(default=SecretStr(""), json_schema_extra={"input": {"type": "password"}})
        blob: Optional[SecretBytes] = None
        keys: list[SecretStr] = []
        endpoint: Endpoint = Endpoint()
        plain: str = "p"

    class UserValves(pydantic.v1.BaseModel):
        token: pydantic.v1.SecretStr = pydantic.v1.SecretStr("")
"""


def test_secret_valves_are_stored_with_their_real_value(loader_fast):
    """pydantic's JSON dump masks secrets as "**********"; stored so, the secret would be lost."""
    values = {
        "api_key": "sk-real",
        "blob": "bytes-real",
        "keys": ["k1", "k2"],
        "endpoint": {"url": "https://x", "token": "t-real"},
    }
    result = loader_fast.validate_valves(unique(SECRETS), values)

    assert result.ok, result.errors
    assert result.values == values

    user = loader_fast.validate_valves(unique(SECRETS), {"token": "u-real"}, kind="user_valves")
    assert user.ok, user.errors
    assert user.values == {"token": "u-real"}

    checked = loader_fast.load_function(unique(SECRETS), valves={"api_key": "sk-other"})
    assert checked.valves_check.values == {"api_key": "sk-other"}


def test_validate_valves_on_code_that_fails(loader_fast):
    result = loader_fast.validate_valves(unique("raise RuntimeError('boom')\n"), {})

    assert not result.ok
    assert result.error.type == "RuntimeError"
    assert result.error.line == 1


def test_load_with_valves_checks_them_in_the_same_child(loader_fast):
    jobs = loader_fast.stats()["jobs"]
    result = loader_fast.load_function(unique(VALIDATED), valves={"priority": "7", "mode": "z"})

    assert loader_fast.stats()["jobs"] == jobs + 1
    assert result.ok
    assert result.valves_check is not None
    assert not result.valves_check.ok
    assert [error["loc"] for error in result.valves_check.errors] == [["mode"]]

    fine = loader_fast.load_function(unique(VALIDATED), valves={"priority": "7"})
    assert fine.valves_check.ok and fine.valves_check.values == {"priority": 7}


# --- the cache -------------------------------------------------------------------------------------------------


def test_identical_loads_are_answered_from_the_cache_as_independent_copies(loader_fast):
    content = unique(SMALL_FILTER)
    first = loader_fast.load_function(content)
    jobs = loader_fast.stats()["jobs"]

    first.valves_schema["properties"].clear()
    second = loader_fast.load_function(content)

    assert loader_fast.stats()["jobs"] == jobs
    assert second.ok and "priority" in second.valves_schema["properties"]

    other_id = loader_fast.load_function(content, function_id="another")
    assert loader_fast.stats()["jobs"] == jobs + 1
    assert other_id.ok

    with_valves = loader_fast.load_function(content, valves={"priority": 1})
    assert loader_fast.stats()["jobs"] == jobs + 2
    assert with_valves.valves_check.values == {"priority": 1}


def test_identical_validations_are_cached(loader_fast):
    content = unique(VALIDATED)
    loader_fast.validate_valves(content, {"priority": "1"})
    jobs = loader_fast.stats()["jobs"]

    assert loader_fast.validate_valves(content, {"priority": "1"}).values == {"priority": 1}
    assert loader_fast.stats()["jobs"] == jobs
    assert loader_fast.validate_valves(content, {"priority": "2"}).values == {"priority": 2}
    assert loader_fast.stats()["jobs"] == jobs + 1


def test_default_factory_values_are_reported_beside_the_unchanged_schema(loader_fast, source):
    result = loader_fast.load_function(
        source("""
        from pydantic import BaseModel, Field, SecretStr

        class Filter:
            class Valves(BaseModel):
                tags: list[str] = Field(default_factory=lambda: ["a", "b"])
                extra: dict = Field(default_factory=dict)
                plain: int = 3
                token: SecretStr = Field(default_factory=lambda: SecretStr("s3cret"))
                named: list[int] = Field(default_factory=lambda: [1], alias="Named")
                broken: list[int] = Field(default_factory=lambda: 1 / 0)

            class UserValves(BaseModel):
                things: set[str] = Field(default_factory=lambda: {"x"})
    """)
    )

    assert result.ok, result.error
    # Open WebUI's schema has no default for factory fields; it stays so.
    assert {name for name, prop in result.valves_schema["properties"].items() if "default" in prop} == {
        "plain"
    }
    # Secrets and factories that fail are left out.
    assert result.valves_defaults == {"tags": ["a", "b"], "extra": {}, "Named": [1]}
    assert result.user_valves_defaults == {"things": ["x"]}
    assert "s3cret" not in json.dumps(result.to_dict())


def test_during_runs_once_while_the_child_loads_and_once_for_a_cached_result(loader_fast):
    content = unique(SMALL_FILTER.lstrip("\n"))
    seen = []

    def during():
        seen.append(loader_fast.stats()["jobs"])

    jobs = loader_fast.stats()["jobs"]
    first = loader_fast.load_function(content, during=during)
    assert first.ok and seen == [jobs + 1]  # the job was sent before `during` ran
    cached = loader_fast.load_function(content, during=during)
    assert cached.ok and seen == [
        jobs + 1,
        jobs + 1,
    ]  # answered from the cache: no job, `during` all the same
    assert cached.manifest == first.manifest == {"title": "Small Filter", "version": "1.2.0"}


def test_an_exception_in_during_propagates_and_the_loader_goes_on(loader_fast):
    class Taken(Exception):
        pass

    def during():
        raise Taken

    with pytest.raises(Taken):
        loader_fast.load_function(unique(SMALL_FILTER.lstrip("\n")), during=during)
    assert loader_fast.load_function(unique(SMALL_FILTER.lstrip("\n"))).ok
