"""The open_webui compatibility package that function code imports inside the loader's processes.

The package is meant for those processes only; here it is put on sys.path for this module alone and taken off
again afterwards, so no other test sees an ``open_webui`` module.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from pydantic import BaseModel

COMPAT_DIR = Path(__file__).resolve().parents[2] / "loader" / "compat"


@pytest.fixture(scope="module", autouse=True)
def compat():
    """Make ``open_webui`` importable for this module's tests, and forget it afterwards."""
    sys.path.insert(0, str(COMPAT_DIR))
    finders_before = list(sys.meta_path)
    try:
        yield importlib.import_module("open_webui")
    finally:
        sys.path.remove(str(COMPAT_DIR))
        sys.meta_path[:] = finders_before
        for name in [name for name in sys.modules if name == "open_webui" or name.startswith("open_webui.")]:
            del sys.modules[name]


@pytest.fixture
def misc():
    return importlib.import_module("open_webui.utils.misc")


def unavailable_error():
    return importlib.import_module("open_webui._unavailable").NotAvailableInSluice


# ------------------------------------------------------------------------------------------ what must import

SPEC_NAMES = [
    ("open_webui.models.users", "Users"),
    ("open_webui.models.users", "UserModel"),
    ("open_webui.models.users", "User"),
    ("open_webui.models.files", "Files"),
    ("open_webui.models.files", "FileForm"),
    ("open_webui.models.chats", "Chats"),
    ("open_webui.models.models", "Models"),
    ("open_webui.models.functions", "Functions"),
    ("open_webui.utils.misc", "get_last_user_message"),
    ("open_webui.utils.misc", "get_last_assistant_message"),
    ("open_webui.utils.misc", "get_last_user_message_item"),
    ("open_webui.utils.misc", "pop_system_message"),
    ("open_webui.utils.misc", "add_or_update_system_message"),
    ("open_webui.utils.misc", "get_messages_content"),
    ("open_webui.utils.misc", "deep_update"),
    ("open_webui.utils.chat", "generate_chat_completion"),
    ("open_webui.main", "app"),
    ("open_webui.main", "generate_chat_completions"),
    ("open_webui.storage.provider", "Storage"),
    ("open_webui.env", "SRC_LOG_LEVELS"),
    ("open_webui.env", "VERSION"),
    ("open_webui.env", "AIOHTTP_CLIENT_TIMEOUT"),
    ("open_webui.constants", "TASKS"),
    ("open_webui.constants", "ERROR_MESSAGES"),
    ("open_webui.config", "UPLOAD_DIR"),
    ("open_webui.config", "CACHE_DIR"),
    ("open_webui.internal.db", "get_db"),
    ("open_webui.internal.db", "get_db_context"),
    ("open_webui.internal.db", "get_async_db_context"),
    ("open_webui.internal.db", "engine"),
    ("open_webui.internal.db", "Base"),
    # The other modules community functions import, by REAL-FUNCTIONS.md's count.
    ("open_webui.routers.images", "image_generations"),
    ("open_webui.routers.images", "GenerateImageForm"),
    ("open_webui.routers.files", "upload_file"),
    ("open_webui.utils.tools", "get_tools"),
    ("open_webui.models.tools", "Tools"),
    ("open_webui.routers.memories", "add_memory"),
    ("open_webui.routers.memories", "AddMemoryForm"),
    ("open_webui.models.skills", "Skills"),
    ("open_webui.utils.middleware", "chat_web_search_handler"),
    ("open_webui.models.memories", "Memories"),
    ("open_webui.models.knowledge", "Knowledges"),
    ("open_webui.utils.auth", "get_verified_user"),
    # Paths of functions written for Open WebUI 0.3 ("from apps.webui.models.users import Users" is rewritten).
    ("open_webui.apps.webui.models.users", "Users"),
    ("open_webui.apps.webui.models.files", "Files"),
    ("open_webui.apps.webui.internal.db", "Base"),
    ("open_webui.apps.webui.main", "webui_app"),
    ("open_webui.apps.openai.main", "generate_chat_completion"),
    ("open_webui.apps.ollama.main", "generate_chat_completion"),
    ("open_webui.apps.rag.utils", "query_doc"),
    ("open_webui.utils.utils", "get_verified_user"),
]


@pytest.mark.parametrize("module, name", SPEC_NAMES, ids=[f"{m}.{n}" for m, n in SPEC_NAMES])
def test_names_community_functions_import_are_there(module, name):
    value = getattr(importlib.import_module(module), name)  # AttributeError if missing

    # A few are None in Open WebUI too (AIOHTTP_CLIENT_TIMEOUT when unset).
    assert value is not None or (module, name) == ("open_webui.env", "AIOHTTP_CLIENT_TIMEOUT")


def test_legacy_paths_give_the_current_objects():
    from open_webui.apps.webui.internal.db import Base as legacy_base
    from open_webui.apps.webui.models.users import Users as legacy_users
    from open_webui.internal.db import Base
    from open_webui.models.users import Users

    assert legacy_users is Users
    assert legacy_base is Base
    # Aliasing must not re-label the real module.
    assert importlib.import_module("open_webui.models.users").__spec__.name == "open_webui.models.users"


def test_a_name_open_webui_does_not_have_is_an_import_error_as_there():
    with pytest.raises(ImportError):
        exec("from open_webui.utils.misc import a_helper_open_webui_never_had", {})
    with pytest.raises(ImportError):
        exec("from open_webui.models.users import NoSuchModel", {})
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("open_webui.no_such_module")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("open_webui.env", "WEBUI_URL"),  # a config setting in 0.12.4
        ("open_webui.env", "LOG_SOURCES"),
        ("open_webui.config", "PersistentConfig"),
    ],
)
def test_names_open_webui_0_12_has_dropped_are_import_errors(module, name):
    """Fallbacks such as `try: from open_webui.env import WEBUI_URL / except ImportError:` take Open WebUI's branch."""
    with pytest.raises(ImportError):
        exec(f"from {module} import {name}", {})


def test_webui_url_comes_from_config():
    from open_webui.config import WEBUI_URL

    assert isinstance(WEBUI_URL, str)


def test_try_except_fallbacks_in_function_code_still_work():
    namespace: dict = {}
    exec(
        "try:\n"
        "    from open_webui.utils.misc import a_helper_open_webui_never_had as helper\n"
        "except ImportError:\n"
        "    helper = 'fallback'\n",
        namespace,
    )
    assert namespace["helper"] == "fallback"


def test_catalogued_reexports_are_the_real_objects():
    import typing

    from fastapi import Request
    from open_webui.main import Request as reexported_request
    from open_webui.utils.misc import Optional as reexported_optional

    assert reexported_optional is typing.Optional
    assert reexported_request is Request


@pytest.mark.parametrize(
    ("module", "name", "value"),
    [
        ("open_webui.config", "OPENAI_API_BASE_URL", "https://api.openai.com/v1"),
        ("open_webui.config", "OLLAMA_BASE_URL", "http://localhost:11434"),
        ("open_webui.config", "RAG_TOP_K", 3),
        ("open_webui.config", "CHUNK_SIZE", 1000),
        ("open_webui.config", "DEFAULT_LOCALE", ""),
        ("open_webui.config", "ENABLE_WEB_SEARCH", False),
        ("open_webui.config", "WEB_SEARCH_ENGINE", ""),
        ("open_webui.env", "DEVICE_TYPE", "cpu"),
        ("open_webui.env", "WEBUI_SESSION_COOKIE_SECURE", False),
    ],
)
def test_catalogued_settings_have_open_webuis_stock_values(module, name, value):
    got = getattr(importlib.import_module(module), name)

    assert got == value and type(got) is type(value)


def test_a_catalogued_setting_is_a_valves_default_as_in_open_webui():
    namespace: dict = {}
    exec(
        "from pydantic import BaseModel, Field\n"
        "from open_webui.config import RAG_TOP_K, OPENAI_API_BASE_URL\n"
        "class Valves(BaseModel):\n"
        "    base_url: str = Field(default=OPENAI_API_BASE_URL)\n"
        "    top_k: int = Field(default=RAG_TOP_K, ge=1)\n",
        namespace,
    )
    properties = namespace["Valves"].model_json_schema()["properties"]

    assert properties["base_url"]["default"] == "https://api.openai.com/v1"
    assert properties["top_k"]["default"] == 3


def test_stock_values_hold_no_secret_and_no_path_of_the_machine_that_made_them():
    import json

    catalogue = json.loads((COMPAT_DIR / "open_webui" / "_catalogue.json").read_text(encoding="utf-8"))
    values = [value for found in catalogue["values"].values() for value in found.values()]

    assert len(values) > 500
    assert all(value is None or type(value) in (str, int, float, bool) for value in values)
    assert not [
        value for value in values if isinstance(value, str) and ("/tmp/" in value or len(value) > 200)
    ]
    assert "WEBUI_SECRET_KEY" not in catalogue["values"]["open_webui.env"]


def test_catalogue_follows_the_version_env_reports():
    import json

    from open_webui.env import VERSION

    catalogue = json.loads((COMPAT_DIR / "open_webui" / "_catalogue.json").read_text(encoding="utf-8"))
    assert catalogue["version"] == VERSION == "0.12.4"


# ------------------------------------------------------------------------------------------ unavailable things


def test_using_a_server_object_says_it_is_not_available_in_sluice():
    from open_webui.models.users import Users

    with pytest.raises(
        NotImplementedError, match=r"open_webui\.models\.users\.Users\.get_user_by_id is not available"
    ):
        Users.get_user_by_id("some-id")
    assert isinstance(unavailable_error()("x"), NotImplementedError)


def test_unavailable_coroutines_raise_when_called():
    from open_webui.main import generate_chat_completions
    from open_webui.utils.chat import generate_chat_completion

    async def pipe():
        return await generate_chat_completion(None, {"model": "m"}, None)

    with pytest.raises(unavailable_error(), match="generate_chat_completion is not available in Sluice"):
        asyncio.run(pipe())
    with pytest.raises(unavailable_error(), match="generate_chat_completions"):
        generate_chat_completions(None, {}, None)


def test_storage_is_falsy_so_guards_take_the_missing_branch():
    from open_webui.storage.provider import Storage

    assert not Storage
    assert "not available in Sluice" in repr(Storage)
    with pytest.raises(unavailable_error()):
        Storage.upload_file(b"", "name", {})


def test_stand_in_classes_can_be_subclassed_but_not_instantiated():
    from open_webui.routers.images import GenerateImageForm

    class MyForm(GenerateImageForm):
        def __init__(self, prompt: str):
            self.prompt = prompt

    assert MyForm("a cat").prompt == "a cat"
    with pytest.raises(unavailable_error(), match="GenerateImageForm is not available in Sluice"):
        GenerateImageForm(prompt="a cat")
    with pytest.raises(unavailable_error()):
        GenerateImageForm.model_validate({})


def test_stand_ins_used_as_pydantic_annotations_do_not_break_valves():
    from open_webui.models.tools import ToolModel
    from open_webui.models.users import UserModel, Users
    from open_webui.routers.images import GenerateImageForm

    class Valves(BaseModel):
        form: Optional[GenerateImageForm] = None  # noqa: UP045 - typing.Optional checks its argument
        tool: ToolModel | None = None
        table: Users | None = None
        also_table: Optional[Users] = None  # noqa: UP045
        user: Optional[UserModel] = None  # noqa: UP045
        label: str = "x"

    schema = Valves.model_json_schema()
    assert set(schema["properties"]) == {"form", "tool", "table", "also_table", "user", "label"}
    assert Valves(form=1).form == 1


def test_user_model_has_open_webuis_shape():
    from open_webui.models.users import UserModel

    user = UserModel(
        id="u1", email="a@example.com", name="Ada", role="admin", last_active_at=1, updated_at=1, created_at=1
    )
    assert user.role == "admin"
    assert "variables" not in user.model_dump()
    assert user.profile_image_url == "/api/v1/users/u1/profile/image"  # Open WebUI's generated avatar
    settings = UserModel.model_validate({**user.model_dump(), "settings": {"ui": {}, "extra": 1}}).settings
    assert settings.ui == {} and settings.extra == 1  # UserSettings keeps keys beyond ui


def test_models_used_as_valve_types_give_open_webuis_schema():
    """No docstring leaks into `$defs` as a description, and settings is a UserSettings model, as in Open WebUI."""
    from open_webui.models.files import FileForm
    from open_webui.models.users import UserModel

    class Valves(BaseModel):
        owner: Optional[UserModel] = None  # noqa: UP045
        template_file: Optional[FileForm] = None  # noqa: UP045

    defs = Valves.model_json_schema()["$defs"]

    assert sorted(defs) == ["FileForm", "UserModel", "UserSettings"]
    assert not [name for name, schema in defs.items() if "description" in schema]
    assert defs["UserModel"]["properties"]["settings"] == {
        "anyOf": [{"$ref": "#/$defs/UserSettings"}, {"type": "null"}],
        "default": None,
    }
    assert defs["UserSettings"] == {
        "additionalProperties": True,
        "properties": {
            "ui": {
                "anyOf": [{"additionalProperties": True, "type": "object"}, {"type": "null"}],
                "default": {},
                "title": "Ui",
            }
        },
        "title": "UserSettings",
        "type": "object",
    }


def test_file_form_defaults():
    from open_webui.models.files import FileForm

    form = FileForm(id="f1", filename="a.txt", path="/tmp/a.txt")
    assert form.data == {} and form.meta == {} and form.hash is None


# ---------------------------------------------------------------------------------------- env, config, constants


def test_src_log_levels_gives_a_level_for_any_key():
    import logging

    from open_webui.env import SRC_LOG_LEVELS

    assert SRC_LOG_LEVELS["MAIN"] in logging.getLevelNamesMapping()
    assert SRC_LOG_LEVELS["SOMETHING_ELSE"] in logging.getLevelNamesMapping()
    logging.getLogger("compat-test").setLevel(SRC_LOG_LEVELS["RAG"])


def test_env_values_have_open_webuis_types():
    from open_webui import env

    assert env.VERSION.startswith("0.12")
    assert env.AIOHTTP_CLIENT_TIMEOUT is None or isinstance(env.AIOHTTP_CLIENT_TIMEOUT, int)
    assert isinstance(env.DATA_DIR, Path)
    assert env.WEBUI_NAME


def read_in_fresh_process(names: str, environ: dict[str, str]) -> list:
    """The values of `open_webui.env`'s `names` as a fresh process with exactly `environ` imports them."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from open_webui import env;"
        f"print(repr([getattr(env, name) for name in {names.split()!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, str(COMPAT_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=environ,
    )
    return ast.literal_eval(result.stdout)


TIMEOUTS = (
    "AIOHTTP_CLIENT_TIMEOUT AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST"
    " AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER_DATA MODELS_CACHE_TTL"
)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, [None, None, 10, 10, 1]),  # unset: no timeout, as in Open WebUI 0.12.4
        ({"AIOHTTP_CLIENT_TIMEOUT": "60"}, [60, 60, 10, 10, 1]),
        ({"AIOHTTP_CLIENT_TIMEOUT": "soon", "AIOHTTP_CLIENT_TIMEOUT_TOOL_SERVER": "5"}, [300, 5, 10, 10, 1]),
        ({"AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST": "", "MODELS_CACHE_TTL": ""}, [None, None, None, 10, None]),
        ({"AIOHTTP_CLIENT_TIMEOUT_OPENAI_MODEL_LIST": "3"}, [None, None, 3, 10, 1]),
    ],
)
def test_timeouts_are_none_unless_set_as_in_open_webui(environ, expected):
    assert read_in_fresh_process(TIMEOUTS, environ) == expected


def test_a_custom_webui_name_credits_open_webui_as_there():
    assert read_in_fresh_process("WEBUI_NAME", {"WEBUI_NAME": "Acme Chat"}) == ["Acme Chat (Open WebUI)"]
    assert read_in_fresh_process("WEBUI_NAME", {}) == ["Open WebUI"]


def test_tasks_compare_equal_to_their_strings():
    from open_webui.constants import TASKS

    assert TASKS.TITLE_GENERATION == "title_generation"
    assert f"{TASKS.TAGS_GENERATION}" == "tags_generation"
    assert "title_generation" in {TASKS.TITLE_GENERATION}
    assert TASKS.DEFAULT() == "generation" and TASKS.DEFAULT("x") == "x"
    assert "DEFAULT" not in TASKS.__members__


def test_error_messages_default_hides_exception_text():
    from open_webui.constants import ERROR_MESSAGES

    assert ERROR_MESSAGES.DEFAULT() == "Something went wrong :/"
    assert ERROR_MESSAGES.DEFAULT("boom") == "[ERROR: boom]"
    assert (
        ERROR_MESSAGES.DEFAULT(RuntimeError("secret"), "Error creating function")
        == "[ERROR: Error creating function]"
    )
    assert ERROR_MESSAGES.NOT_FOUND == "We could not find what you're looking for :/"


def test_app_looks_like_open_webuis_without_redis():
    from open_webui.main import app

    assert app.state.redis is None  # `if app.state.redis:` guards take the no-Redis branch
    assert app.version == "0.1.0"  # FastAPI's default, which Open WebUI keeps
    assert app.title == "Open WebUI"
    # Open WebUI 0.12.4 has no app.state.TOOLS, so getattr(app.state, "TOOLS", fallback) takes the fallback.
    assert getattr(app.state, "TOOLS", "fallback") == "fallback"


def test_app_state_has_empty_models_and_reads_config():
    from open_webui.config import UPLOAD_DIR
    from open_webui.main import app

    assert app.state.MODELS == {}
    assert app.state.BASE_MODELS == []
    assert app.state.config.UPLOAD_DIR == UPLOAD_DIR
    assert getattr(app.state.config, "NO_SUCH_SETTING", "default") == "default"
    with pytest.raises(AttributeError, match="not available in Sluice"):
        app.state.config.NO_SUCH_SETTING  # noqa: B018


def test_app_state_models_build_a_literal_like_functions_do():
    from typing import Literal

    from open_webui.main import app
    from pydantic import create_model

    choices = sorted(app.state.MODELS) or ["none"]
    model = create_model("V", TARGET=(Literal[tuple(choices)], choices[0]))
    assert model.model_json_schema()["properties"]["TARGET"]["const"] == "none"


# ------------------------------------------------------------------------------------------------- database


def test_function_tables_can_be_declared_and_created_at_import():
    from open_webui.internal.db import Base, JSONField, engine, get_db, get_db_context
    from sqlalchemy import Column, String

    class Note(Base):
        __tablename__ = "compat_test_note"
        id = Column(String, primary_key=True)
        data = Column(JSONField)

    Base.metadata.create_all(bind=engine)
    with get_db() as db:
        db.add(Note(id="n1", data={"a": [1, 2]}))
        db.commit()
    with get_db_context() as db:
        assert db.get(Note, "n1").data == {"a": [1, 2]}


def test_async_db_context_is_not_available():
    from open_webui.internal.db import get_async_db_context

    async def use():
        async with get_async_db_context():
            pass

    with pytest.raises(unavailable_error(), match="get_async_db_context"):
        asyncio.run(use())


# ------------------------------------------------------------------------------------------------ messages


def test_last_user_message_plain_and_multimodal(misc):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "look"}],
        },
    ]
    assert misc.get_last_user_message(messages) == "look"
    assert misc.get_last_user_message_item(messages) is messages[3]
    assert misc.get_last_assistant_message(messages) == "answer"
    assert misc.get_last_assistant_message_item(messages) is messages[2]
    assert misc.get_last_user_message([{"role": "assistant", "content": "a"}]) is None
    assert misc.get_last_assistant_message([]) is None


def test_content_falls_back_to_responses_output(misc):
    message = {
        "role": "assistant",
        "content": "",
        "output": [
            {"type": "reasoning", "content": [{"text": "hidden"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "Hello "}, {"text": "world"}]},
        ],
    }
    assert misc.get_content_from_message(message) == "Hello world"
    assert misc.get_content_from_message({"role": "user", "content": ""}) == ""
    assert misc.get_content_from_message({"role": "user", "content": [{"type": "image_url"}]}) is None


def test_pop_system_message_leaves_the_list_alone(misc):
    messages = [
        {"role": "system", "content": "one"},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "two"},
    ]
    system, rest = misc.pop_system_message(messages)
    assert system == {"role": "system", "content": "one"}
    assert rest == [{"role": "user", "content": "hi"}]
    assert len(messages) == 3
    assert misc.pop_system_message([{"role": "user", "content": "x"}]) == (
        None,
        [{"role": "user", "content": "x"}],
    )


def test_add_or_update_system_message(misc):
    messages = [{"role": "user", "content": "hi"}]
    assert misc.add_or_update_system_message("rules", messages) is messages
    assert messages[0] == {"role": "system", "content": "rules"}
    misc.add_or_update_system_message("more", messages)
    assert messages[0]["content"] == "more\nrules"
    misc.add_or_update_system_message("last", messages, append=True)
    assert messages[0]["content"] == "more\nrules\nlast"
    # A system message that is not first is not the one updated.
    later = [{"role": "user", "content": "u"}, {"role": "system", "content": "s"}]
    misc.add_or_update_system_message("new", later)
    assert later[0] == {"role": "system", "content": "new"} and len(later) == 3


def test_update_message_content_in_every_text_part(misc):
    message = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    misc.update_message_content(message, "x")
    assert [part["text"] for part in message["content"]] == ["a\nx", "b\nx"]
    misc.update_message_content(message, "y", append=False)
    assert message["content"][0]["text"] == "y\na\nx"


def test_user_and_assistant_message_updates(misc):
    messages = [{"role": "user", "content": "question"}]
    misc.add_or_update_user_message("context", messages)
    assert messages == [{"role": "user", "content": "question\ncontext"}]
    misc.add_or_update_user_message("first", messages, append=False)
    assert messages[0]["content"] == "first\nquestion\ncontext"
    misc.append_or_update_assistant_message("part 1", messages)
    misc.append_or_update_assistant_message("part 2", messages)
    assert messages[-1] == {"role": "assistant", "content": "part 1\npart 2"}
    misc.add_or_update_user_message("next", messages)
    assert messages[-1] == {"role": "user", "content": "next"}


def test_prepend_to_first_user_message(misc):
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]
    misc.prepend_to_first_user_message_content("ctx", messages)
    assert [m["content"] for m in messages] == ["s", "ctx\na", "b"]


def test_set_last_user_message_content(misc):
    messages = [{"role": "user", "content": [{"type": "image_url"}, {"type": "text", "text": "old"}]}]
    misc.set_last_user_message_content("new", messages)
    assert messages[0]["content"][1]["text"] == "new"


def test_messages_content_and_message_list(misc):
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "yo"}]},
    ]
    assert misc.get_messages_content(messages) == "USER: hi\nASSISTANT: yo"
    history = {
        "a": {"id": "a", "parentId": None, "content": "1"},
        "b": {"id": "b", "parentId": "a", "content": "2"},
        "c": {"id": "c", "parentId": "b", "content": "3"},
    }
    assert [m["id"] for m in misc.get_message_list(history, "c")] == ["a", "b", "c"]
    assert misc.get_message_list(history, "missing") == []
    assert misc.get_message_list(None, "c") == []
    looped = {"a": {"parentId": "b"}, "b": {"parentId": "a"}}
    assert len(misc.get_message_list(looped, "a")) == 2


def test_merge_and_remove_system_messages(misc):
    messages = [
        {"role": "system", "content": "a"},
        {"role": "user", "content": "u"},
        {"role": "system", "content": "b"},
    ]
    assert misc.merge_system_messages(messages) == [
        {"role": "system", "content": "a\nb"},
        {"role": "user", "content": "u"},
    ]
    assert misc.remove_system_message(messages) == [{"role": "user", "content": "u"}]
    assert misc.get_system_message(messages)["content"] == "a"


def test_deep_update_merges_nested_mappings(misc):
    base = {"a": {"b": 1, "c": {"d": 2}}, "x": 1}
    result = misc.deep_update(base, {"a": {"c": {"e": 3}}, "x": [2], "n": {"m": 1}})
    assert result is base
    assert base == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "x": [2], "n": {"m": 1}}


def test_openai_templates(misc):
    chunk = misc.openai_chat_chunk_message_template("m", "hello")
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"][0]["delta"] == {"content": "hello"}
    assert chunk["choices"][0]["finish_reason"] is None
    assert chunk["id"].startswith("m-")
    closing = misc.openai_chat_chunk_message_template("m")
    assert closing["choices"][0] == {"index": 0, "logprobs": None, "finish_reason": "stop", "delta": {}}
    done = misc.openai_chat_completion_message_template("m", "text", usage={"total_tokens": 3})
    assert done["choices"][0]["message"] == {"role": "assistant", "content": "text"}
    assert done["choices"][0]["finish_reason"] == "stop" and done["usage"] == {"total_tokens": 3}
    tools = misc.openai_chat_completion_message_template("m", "", tool_calls=[{"id": "t"}])
    assert tools["choices"][0]["finish_reason"] == "tool_calls"


def test_small_string_helpers(misc):
    from datetime import timedelta

    assert misc.parse_duration("1h30m") == timedelta(minutes=90)
    assert misc.parse_duration("-1") is None
    with pytest.raises(ValueError):
        misc.parse_duration("soon")
    assert misc.sanitize_filename("My File!.txt") == "my-filetxt"
    assert misc.calculate_sha256_string("abc").startswith("ba7816bf")
    assert misc.validate_email_format("admin@localhost") and not misc.validate_email_format("nope")
    assert misc.convert_logit_bias_input_to_json("50256:-200, 11: 5") == '{"50256": -100, "11": 5}'
    assert misc.extract_folders_after_data_docs("/x/data/docs/a/b/f.txt") == ["a", "a/b"]
    assert misc.get_gravatar_url(" A@B.C ").startswith("https://www.gravatar.com/avatar/")


def test_throttle_skips_repeat_calls(misc):
    calls = []

    @misc.throttle(60)
    async def work(x):
        calls.append(x)
        return x

    async def run():
        return [await work(1), await work(1), await work(2)]

    assert asyncio.run(run()) == [1, None, 2]
    assert calls == [1, 2]


# --------------------------------------------------------------------------------------------------- weight


def test_common_modules_stay_light():
    """Importing what most functions import pulls in neither SQLAlchemy nor FastAPI (only internal.db needs one)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import open_webui.models.users, open_webui.models.files, open_webui.models.chats, open_webui.utils.misc,"
        " open_webui.utils.chat, open_webui.main, open_webui.env, open_webui.config, open_webui.constants,"
        " open_webui.storage.provider;"
        "print(sorted(m for m in ('sqlalchemy', 'fastapi', 'starlette') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, str(COMPAT_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
