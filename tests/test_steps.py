"""edge.steps: config normalisation (both dialects), discovery, handler calling."""

from __future__ import annotations

import functools
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from edge.errors import ConfigError
from edge.steps import (
    CronTrigger,
    Enqueue,
    HttpTrigger,
    QueryParam,
    QueueConfig,
    QueueTrigger,
    StateTrigger,
    Step,
    StreamTrigger,
    api,
    call_handler,
    cron,
    discover,
    http,
    normalise_path,
    parse_step_config,
    parse_stream_config,
    prepare_handler,
    queue,
    state,
    stream,
)

F = "steps/create_step.py"


@pytest.fixture(autouse=True)
def isolated_imports():
    """Discovery edits sys.path and sys.modules; undo that for the project modules only
    (third-party modules a test imported stay, so class identities survive)."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        module = sys.modules[name]
        if name.split(".")[0] in ("steps", "src") or "__edge_project__" in getattr(module, "__dict__", {}):
            del sys.modules[name]


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def error_of(raw, file: str = F) -> str:
    with pytest.raises(ConfigError) as info:
        parse_step_config(raw, file=file)
    return str(info.value)


def messages(found) -> list[str]:
    return [e.message for e in found.errors]


# -- helpers ---------------------------------------------------------------------------------

def test_helpers_return_plain_trigger_dicts():
    cond = lambda i, c: True  # noqa: E731
    assert http("POST", "/todos", body_schema={"type": "object"}, condition=cond) == {
        "type": "http", "method": "POST", "path": "/todos", "body_schema": {"type": "object"}, "condition": cond,
    }
    assert queue("todo.created", config={"maxRetries": 5}) == {
        "type": "queue", "topic": "todo.created", "config": {"maxRetries": 5},
    }
    assert cron("0 3 * * *", timezone="UTC", missed="once") == {
        "type": "cron", "expression": "0 3 * * *", "timezone": "UTC", "missed": "once",
    }
    assert api("GET", "/todos") == {"type": "http", "method": "GET", "path": "/todos"}  # Motia's older name
    assert state(group="todos") == {"type": "state", "group": "todos"}
    assert stream("todos", group_id="inbox") == {"type": "stream", "stream_name": "todos", "group_id": "inbox"}


# -- native dialect --------------------------------------------------------------------------

def test_native_config_with_helpers():
    mw = lambda req, ctx, nxt: nxt()  # noqa: E731
    fields = parse_step_config({
        "name": "create-todo",
        "description": "Create a todo",
        "triggers": [
            http("post", "/todos/{list_id}/", body_schema={"type": "object"}, response_schema={"201": {"type": "object"}},
                 query_params=[{"name": "dry", "description": "no write"}, "verbose"], middleware=[mw]),
            queue("todo.import", config={"type": "fifo", "maxRetries": 0, "backoffType": "fixed", "timeout": 2.5}),
            cron("*/10 * * * * *", timezone="Europe/Berlin", missed="once"),
            state(group="todos", key="a"),
            stream("todos", group_id="inbox", item_id="1"),
        ],
        "enqueues": ["todo.created", {"topic": "todo.flagged", "label": "flagged", "conditional": True}],
        "virtualEnqueues": ["email"],
        "virtualSubscribes": ["signup"],
        "flows": ["todos"],
        "includeFiles": ["data/*.json"],
    }, file=F)
    assert fields["name"] == "create-todo"
    assert fields["dialect"] == "1.0"
    http_t, queue_t, cron_t, state_t, stream_t = fields["triggers"]
    assert http_t == HttpTrigger(
        index=0, method="POST", path="/todos/:list_id", body_schema={"type": "object"},
        response_schema={201: {"type": "object"}},
        query_params=(QueryParam("dry", "no write"), QueryParam("verbose")), middleware=(mw,),
    )
    assert http_t.param_names == ("list_id",)
    assert queue_t == QueueTrigger(index=1, topic="todo.import", config=QueueConfig(
        type="fifo", max_retries=0, backoff_type="fixed", timeout=2.5))
    assert cron_t == CronTrigger(index=2, expression="*/10 * * * * *", timezone="Europe/Berlin", missed="once")
    assert state_t == StateTrigger(index=3, group="todos", key="a")
    assert stream_t == StreamTrigger(index=4, stream_name="todos", group_id="inbox", item_id="1")
    assert [t.type for t in fields["triggers"]] == ["http", "queue", "cron", "state", "stream"]
    assert fields["enqueues"] == (Enqueue("todo.created"), Enqueue("todo.flagged", "flagged", True))
    assert fields["virtual_enqueues"] == (Enqueue("email"),)
    assert fields["virtual_subscribes"] == ("signup",)
    assert fields["flows"] == ("todos",)
    assert fields["include_files"] == ("data/*.json",)


def test_queue_defaults():
    (t,) = parse_step_config({"name": "a", "triggers": [queue("x")]}, file=F)["triggers"]
    assert t.config == QueueConfig(
        type="standard", max_retries=3, backoff_type="exponential", backoff_delay_ms=1000,
        visibility_timeout=None, delay_seconds=0, concurrency=10, timeout=None,
    )


def test_camel_and_snake_case_give_the_same_step():
    camel = {
        "name": "a",
        "triggers": [
            {"type": "http", "method": "PUT", "path": "/a/:id", "bodySchema": {"type": "object"},
             "responseSchema": {200: {}}, "queryParams": [{"name": "q", "description": "d"}]},
            {"type": "queue", "topic": "t", "config": {"maxRetries": 1, "backoffType": "fixed", "backoffDelayMs": 5,
                                                        "visibilityTimeout": 30, "delaySeconds": 2, "concurrency": 3}},
            {"type": "stream", "streamName": "s", "groupId": "g", "itemId": "i"},
        ],
        "virtualEnqueues": ["v"], "virtualSubscribes": ["w"], "includeFiles": ["x"],
    }
    snake = {
        "name": "a",
        "triggers": [
            {"type": "http", "method": "PUT", "path": "/a/:id", "body_schema": {"type": "object"},
             "response_schema": {200: {}}, "query_params": [{"name": "q", "description": "d"}]},
            {"type": "queue", "topic": "t", "config": {"max_retries": 1, "backoff_type": "fixed", "backoff_delay_ms": 5,
                                                        "visibility_timeout": 30, "delay_seconds": 2, "concurrency": 3}},
            {"type": "stream", "stream_name": "s", "group_id": "g", "item_id": "i"},
        ],
        "virtual_enqueues": ["v"], "virtual_subscribes": ["w"], "include_files": ["x"],
    }
    assert parse_step_config(camel, file=F) == parse_step_config(snake, file=F)
    assert parse_step_config(camel, file=F)["triggers"][1].config.visibility_timeout == 30


def test_infrastructure_form_of_queue_settings():
    (t,) = parse_step_config({
        "name": "a",
        "triggers": [queue("t", infrastructure={"queue": {"type": "fifo", "maxRetries": 7, "visibilityTimeout": 60},
                                                "handler": {"timeout": 9, "ram": 256}})],
    }, file=F)["triggers"]
    assert t.config == QueueConfig(type="fifo", max_retries=7, visibility_timeout=60, timeout=9)


def test_trigger_config_overrides_infrastructure():
    (t,) = parse_step_config({
        "name": "a",
        "infrastructure": {"queue": {"maxRetries": 1}},
        "triggers": [queue("t", config={"max_retries": 2, "concurrency": 1})],
    }, file=F)["triggers"]
    assert (t.config.max_retries, t.config.concurrency) == (2, 1)


def test_path_normalisation():
    assert normalise_path("/todos/{id}") == "/todos/:id"
    assert normalise_path("/todos/:id/") == "/todos/:id"
    assert normalise_path("/") == "/"
    assert normalise_path("/v1/items:batch") == "/v1/items:batch"
    with pytest.raises(ValueError, match='parameter "id" appears twice'):
        normalise_path("/a/:id/b/{id}")


def test_motia_pydantic_trigger_objects_are_read_through_model_dump():
    pydantic = pytest.importorskip("pydantic")

    class ApiTrigger(pydantic.BaseModel):
        type: str = "http"
        method: str
        path: str
        body_schema: dict | None = pydantic.Field(default=None, serialization_alias="bodySchema")

    (t,) = parse_step_config({"name": "a", "triggers": [ApiTrigger(method="GET", path="/p", body_schema={})]}, file=F)["triggers"]
    assert (t.method, t.path, t.body_schema) == ("GET", "/p", {})


# -- Motia 0.x dialect -----------------------------------------------------------------------

def test_legacy_api_step():
    fields = parse_step_config({
        "type": "api", "name": "create", "method": "post", "path": "/todos/{id}", "bodySchema": {"type": "object"},
        "responseSchema": {200: {"type": "object"}}, "queryParams": [{"name": "q", "description": "d"}],
        "emits": ["todo.created", {"topic": "x", "label": "X", "conditional": True}], "subscribes": [],
        "virtualEmits": [{"topic": "mail", "label": "mail"}], "virtualSubscribes": ["y"], "flows": ["f"],
    }, file=F)
    assert fields["dialect"] == "0.x"
    assert fields["triggers"] == (HttpTrigger(
        index=0, method="POST", path="/todos/:id", body_schema={"type": "object"},
        response_schema={200: {"type": "object"}}, query_params=(QueryParam("q", "d"),)),)
    assert fields["enqueues"] == (Enqueue("todo.created"), Enqueue("x", "X", True))
    assert fields["virtual_enqueues"] == (Enqueue("mail", "mail"),)
    assert fields["virtual_subscribes"] == ("y",)


def test_legacy_event_step_gets_one_queue_trigger_per_topic():
    fields = parse_step_config({
        "type": "event", "name": "process", "subscribes": ["a", "b"], "emits": [], "input": {"type": "object"},
        "infrastructure": {"queue": {"maxRetries": 5, "type": "fifo"}, "handler": {"timeout": 3}},
    }, file=F)
    config = QueueConfig(type="fifo", max_retries=5, timeout=3)
    assert fields["triggers"] == (
        QueueTrigger(index=0, topic="a", input={"type": "object"}, config=config),
        QueueTrigger(index=1, topic="b", input={"type": "object"}, config=config),
    )


def test_legacy_cron_and_noop_steps():
    c = parse_step_config({"type": "cron", "name": "nightly", "cron": "0  3 * * *", "emits": ["x"]}, file=F)
    assert c["triggers"] == (CronTrigger(index=0, expression="0 3 * * *"),)
    n = parse_step_config({"type": "noop", "name": "human", "virtualEmits": ["approved"], "virtualSubscribes": ["ask"]}, file=F)
    assert n["triggers"] == () and n["virtual_enqueues"] == (Enqueue("approved"),)


# -- config errors, verbatim -----------------------------------------------------------------

def test_unknown_key_suggests_the_nearest_in_the_users_style():
    assert error_of({"name": "a", "triggers": [{"type": "http", "method": "GET", "path": "/x", "bodySchem": {}}]}) == \
        'steps/create_step.py: triggers[0].bodySchem: unknown key; did you mean "bodySchema"?'
    assert error_of({"name": "a", "triggers": [{"type": "http", "method": "GET", "path": "/x", "body_schem": {}}]}) == \
        'steps/create_step.py: triggers[0].body_schem: unknown key; did you mean "body_schema"?'
    assert error_of({"name": "a", "triggers": [{"type": "state", "grup": "x"}]}) == \
        'steps/create_step.py: triggers[0].grup: unknown key; did you mean "group"?'


def test_unknown_key_without_a_near_one_lists_the_valid_keys():
    assert error_of({"name": "a", "triggers": [http("GET", "/x")], "foo": 1}) == (
        'steps/create_step.py: foo: unknown key "foo"; valid keys: name, description, triggers, enqueues, '
        "virtualEnqueues, virtualSubscribes, flows, includeFiles, infrastructure, runtime"
    )


def test_unknown_keys_from_the_other_dialect_get_a_hint():
    assert error_of({"name": "a", "triggers": [http("GET", "/x")], "emits": ["x"], "enqueues": ["y"]}) == \
        'steps/create_step.py: emits: given together with "enqueues"; keep one ("emits" is the Motia 0.x name of "enqueues")'
    assert error_of({"name": "a", "triggers": [{"type": "cron", "cron": "* * * * *"}]}) == \
        'steps/create_step.py: triggers[0].cron: unknown key; did you mean "expression"?'
    assert error_of({"name": "a", "triggers": [{"type": "queue", "topic": "t", "maxRetries": 3}]}) == \
        'steps/create_step.py: triggers[0].maxRetries: unknown key; queue settings go under "config": {"maxRetries": ...}'


def test_wrong_types_show_the_bad_value():
    send = "steps/send_email_step.py"
    assert error_of({"name": "a", "triggers": [queue("t", config={"maxRetries": "3"})]}, send) == \
        'steps/send_email_step.py: triggers[0].config.maxRetries: expected int, got "3"'
    assert error_of({"name": "a", "triggers": [queue("t", config={"max_retries": True})]}) == \
        "steps/create_step.py: triggers[0].config.max_retries: expected int, got true"
    assert error_of({"name": "a", "triggers": [queue("t", config={"concurrency": 0})]}) == \
        "steps/create_step.py: triggers[0].config.concurrency: expected an int >= 1, got 0"
    assert error_of({"name": "a", "triggers": [queue("t", config={"timeout": -1})]}) == \
        "steps/create_step.py: triggers[0].config.timeout: expected a number > 0, got -1"
    assert error_of({"name": "a", "triggers": [http("GET", "/x", timeout=0)]}) == \
        "steps/create_step.py: triggers[0].timeout: expected a number > 0, got 0"
    assert error_of({"name": "a", "triggers": [{"type": "http", "method": "GET", "path": "/x", "timeout": "30s"}]}) == \
        'steps/create_step.py: triggers[0].timeout: expected number, got "30s"'
    assert error_of({"name": "a", "triggers": [queue("t", config={"backoffType": "linear"})]}) == \
        'steps/create_step.py: triggers[0].config.backoffType: expected one of "exponential", "fixed", got "linear"'
    assert error_of({"name": "a", "triggers": [http("GET", "/x")], "flows": ["a", 3]}) == \
        "steps/create_step.py: flows[1]: expected str, got 3"
    assert error_of({"name": "a", "triggers": [http("GET", "/x", condition="yes")]}) == \
        'steps/create_step.py: triggers[0].condition: expected a function (input, ctx) -> bool, got "yes"'
    assert error_of({"name": "a", "triggers": [http("GET", "/x", body_schema="Todo")]}) == (
        "steps/create_step.py: triggers[0].body_schema: expected a JSON Schema dict, a msgspec.Struct class "
        'or a pydantic model class, got "Todo"'
    )
    assert error_of({"name": "a", "triggers": ["http"]}) == \
        'steps/create_step.py: triggers[0]: expected a trigger dict with "type", e.g. edge.http("GET", "/todos"), got "http"'
    assert error_of("hello") == 'steps/create_step.py: config: expected dict, got "hello"'


def test_long_bad_values_are_shortened():
    message = error_of({"name": "a", "triggers": [queue("t", config={"maxRetries": "x" * 100})]})
    assert message == 'steps/create_step.py: triggers[0].config.maxRetries: expected int, got "' + "x" * 56 + "..."


def test_missing_and_empty_fields_say_how_to_fix_them():
    assert error_of({"triggers": [http("GET", "/x")]}) == \
        'steps/create_step.py: name: required; add "name": "a-unique-name" to config'
    assert error_of({"name": "a"}) == (
        'steps/create_step.py: triggers: required; add "triggers": [edge.http("GET", "/hello")] '
        '(or a Motia 0.x "type": "api" | "event" | "cron" | "noop")'
    )
    assert error_of({"name": "a", "triggers": []}) == (
        'steps/create_step.py: triggers: must not be empty; add at least one trigger, e.g. edge.http("GET", "/hello"), '
        'or use "type": "noop" for a step only drawn in the flow diagram'
    )
    assert error_of({"name": "a", "triggers": [{"method": "GET"}]}) == (
        'steps/create_step.py: triggers[0].type: required; one of "http", "queue", "cron", "state", "stream", '
        "or build the trigger with edge.http(...), edge.queue(...), edge.cron(...), edge.state(...), edge.stream(...)"
    )
    assert error_of({"name": "a", "triggers": [{"type": "stream"}]}) == (
        "steps/create_step.py: triggers[0].streamName: required; the name of a stream defined in a *_stream.py file, "
        'e.g. "streamName": "todos"'
    )
    assert error_of({"name": "", "triggers": [http("GET", "/x")]}) == "steps/create_step.py: name: must not be empty"


def test_http_trigger_errors():
    assert error_of({"name": "a", "triggers": [http("FETCH", "/x")]}) == (
        'steps/create_step.py: triggers[0].method: expected one of "GET", "POST", "PUT", "PATCH", "DELETE", '
        '"HEAD", "OPTIONS", got "FETCH"'
    )
    assert error_of({"name": "a", "triggers": [http("GET", "todos")]}) == \
        'steps/create_step.py: triggers[0].path: must start with "/", got "todos"; write "/todos"'
    assert error_of({"name": "a", "triggers": [http("GET", "/x/{a}{b}")]}) == \
        'steps/create_step.py: triggers[0].path: a path parameter must be a whole segment, like /todos/:id; got "/x/{a}{b}"'
    assert error_of({"name": "a", "triggers": [http("GET", "/x", response_schema={"abc": {}})]}) == \
        'steps/create_step.py: triggers[0].response_schema["abc"]: expected an HTTP status code (100-599) as the key'


def test_cron_trigger_errors():
    assert error_of({"name": "a", "triggers": [cron("* * * *")]}) == \
        'steps/create_step.py: triggers[0].expression: expected 5, 6 or 7 fields (6 and 7 start with seconds), got 4: "* * * *"'
    assert error_of({"name": "a", "triggers": [cron("@daily")]}) == \
        'steps/create_step.py: triggers[0].expression: macros are not supported, got "@daily"; write "0 0 * * *"'
    assert error_of({"name": "a", "triggers": [cron("* * * * *", timezone="Europe/Berln")]}) == \
        'steps/create_step.py: triggers[0].timezone: unknown time zone "Europe/Berln"; did you mean "Europe/Berlin"?'
    assert error_of({"name": "a", "triggers": [cron("* * * * *", missed="all")]}) == \
        'steps/create_step.py: triggers[0].missed: expected one of "skip", "once", got "all"'


def test_key_given_twice_and_mixed_dialects():
    assert error_of({"name": "a", "triggers": [queue("t", config={"max_retries": 1, "maxRetries": 2})]}) == \
        'steps/create_step.py: triggers[0].config.maxRetries: given twice (as "max_retries" and "maxRetries"); keep one'
    assert error_of({"name": "a", "type": "api", "triggers": [http("GET", "/x")]}) == \
        'steps/create_step.py: type: Motia 0.x "type" next to "triggers"; remove "type" and describe the step with triggers only'


def test_legacy_errors():
    assert error_of({"type": "event", "name": "a"}) == \
        'steps/create_step.py: subscribes: required; e.g. "subscribes": ["todo.created"]'
    assert error_of({"type": "event", "name": "a", "subscribes": []}) == \
        'steps/create_step.py: subscribes: must list at least one topic, e.g. ["todo.created"]'
    assert error_of({"type": "api", "name": "a", "path": "/x"}) == \
        'steps/create_step.py: method: required; e.g. "method": "GET"'
    assert error_of({"type": "cron", "name": "a"}) == \
        'steps/create_step.py: cron: required; e.g. "cron": "0 3 * * *" (every day at 03:00)'
    assert error_of({"type": "http", "name": "a"}) == (
        'steps/create_step.py: type: expected one of "api", "event", "cron", "noop", got "http" '
        '(edge and Motia 1.0 steps use "triggers": [...] instead of "type")'
    )
    assert error_of({"type": "api", "name": "a", "method": "GET", "path": "/x", "bodyschema": {}}) == \
        'steps/create_step.py: bodyschema: unknown key; did you mean "bodySchema"?'


def test_stream_config():
    can = lambda sub, auth: True  # noqa: E731
    fields = parse_stream_config({"name": "todos", "schema": {"type": "object"}, "baseConfig": {"storageType": "memory"},
                                  "canAccess": can}, file="steps/todos_stream.py")
    assert fields["name"] == "todos" and fields["storage_type"] == "memory" and fields["can_access"] is can
    assert parse_stream_config({"name": "t"}, file="x")["storage_type"] == "default"
    with pytest.raises(ConfigError) as info:
        parse_stream_config({"name": "t", "base_config": {"storage_type": "redis"}}, file="steps/t_stream.py")
    assert str(info.value) == 'steps/t_stream.py: base_config.storage_type: expected one of "default", "memory", got "redis"'


# -- discovery -------------------------------------------------------------------------------

TODO_PROJECT = {
    "steps/shared/db.py": """
        PREFIX = "todo-"
    """,
    "steps/todos/services.py": """
        from steps.shared.db import PREFIX

        def make_id(n):
            return PREFIX + str(n)
    """,
    "steps/todos/create_step.py": """
        from edge.steps import http
        from .services import make_id
        from steps.shared.db import PREFIX

        config = {"name": "create-todo", "triggers": [http("POST", "/todos")], "enqueues": ["todo.created"]}

        async def handler(req, ctx):
            return {"status": 201, "body": {"id": make_id(1), "prefix": PREFIX}}
    """,
    "steps/todos/process_step.py": """
        config = {"type": "event", "name": "process-todo", "subscribes": ["todo.created"], "emits": []}

        def handler(data, ctx):
            return data
    """,
    "steps/todos_stream.py": """
        config = {"name": "todos", "schema": {"type": "object"}, "baseConfig": {"storageType": "memory"}}
    """,
}


async def test_discovers_steps_with_relative_and_absolute_imports_without_init_files(tmp_path):
    found = discover(write(tmp_path, TODO_PROJECT))
    assert messages(found) == []
    assert [s.name for s in found.steps] == ["create-todo", "process-todo"]
    create = found.step("create-todo")
    assert create.file == "steps/todos/create_step.py"
    assert create.module == "steps.todos.create_step"
    assert create.path == tmp_path.resolve() / "steps/todos/create_step.py"
    assert await call_handler(create, None, None) == {"status": 201, "body": {"id": "todo-1", "prefix": "todo-"}}
    assert found.step("process-todo").queue_triggers[0].topic == "todo.created"
    assert found.step("process-todo").dialect == "0.x"
    (todos,) = found.streams
    assert (todos.name, todos.storage_type, todos.file, todos.module) == ("todos", "memory", "steps/todos_stream.py", "steps.todos_stream")
    assert sys.modules["steps.todos.create_step"].handler is create.handler


async def test_discovers_steps_with_init_files(tmp_path):
    files = dict(TODO_PROJECT)
    files["steps/__init__.py"] = "LOADED = True\n"
    files["steps/todos/__init__.py"] = "from .services import make_id as shortcut\n"
    found = discover(write(tmp_path, files))
    assert messages(found) == []
    assert sys.modules["steps"].LOADED is True
    assert sys.modules["steps.todos"].shortcut(2) == "todo-2"
    assert await call_handler(found.step("create-todo"), None, None) == {"status": 201, "body": {"id": "todo-1", "prefix": "todo-"}}


def test_src_folder_is_searched_and_missing_folders_are_skipped(tmp_path):
    write(tmp_path, {"src/hello_step.py": """
        config = {"name": "hello", "triggers": [{"type": "http", "method": "GET", "path": "/hello"}]}
        def handler(req, ctx):
            return {"status": 200, "body": "hi"}
    """})
    found = discover(tmp_path)
    assert [(s.name, s.module) for s in found.steps] == [("hello", "src.hello_step")]
    assert discover(tmp_path, dirs=("steps",)).steps == ()


def test_import_error_names_the_line(tmp_path):
    write(tmp_path, {
        "steps/bad_step.py": """
            config = {"name": "bad", "triggers": [{"type": "cron", "expression": "* * * * *"}]}

            value = undefined_name + 1

            def handler(input, ctx):
                pass
        """,
        "steps/good_step.py": """
            config = {"name": "good", "triggers": [{"type": "state"}]}
            def handler(input, ctx):
                pass
        """,
    })
    found = discover(tmp_path)
    assert messages(found) == ["steps/bad_step.py: line 3: NameError: name 'undefined_name' is not defined"]
    assert found.errors[0].file == "steps/bad_step.py"
    assert "undefined_name" in found.errors[0].traceback
    assert [s.name for s in found.steps] == ["good"]  # the rest still runs
    assert "steps.bad_step" not in sys.modules


def test_import_error_inside_a_helper_names_both_places(tmp_path):
    write(tmp_path, {
        "steps/helpers/math.py": "def ratio():\n    return 1 / 0\n\nRATIO = ratio()\n",
        "steps/a_step.py": "import os\nfrom steps.helpers.math import RATIO\nconfig = {}\n",
    })
    assert messages(discover(tmp_path)) == [
        "steps/a_step.py: line 2: ZeroDivisionError: division by zero (in steps/helpers/math.py, line 2)"
    ]


def test_syntax_error_names_the_line(tmp_path):
    write(tmp_path, {"steps/broken_step.py": "config = {\n  'name': 'x',\n  'triggers': [}\n"})
    assert messages(discover(tmp_path)) == [
        "steps/broken_step.py: line 3: SyntaxError: closing parenthesis '}' does not match opening parenthesis '['"
    ]


def test_missing_config_or_handler(tmp_path):
    write(tmp_path, {
        "steps/no_handler_step.py": 'config = {"name": "a", "triggers": [{"type": "state"}]}\n',
        "steps/no_config_step.py": "def handler(input, ctx):\n    pass\n",
        "steps/bad_handler_step.py": 'config = {"name": "b", "triggers": [{"type": "state"}]}\ndef handler(a, b, c):\n    pass\n',
        "steps/noop_step.py": 'config = {"type": "noop", "name": "human", "virtualEmits": ["ok"]}\n',
    })
    found = discover(tmp_path)
    assert messages(found) == [
        "steps/bad_handler_step.py: handler: takes (a, b, c); a handler is called as handler(input, ctx), handler(input) or handler()",
        'steps/no_config_step.py: config: required; define config = {"name": "...", "triggers": [...]} in the file',
        "steps/no_handler_step.py: handler: required; define async def handler(input, ctx) in the file",
    ]
    (noop,) = found.steps
    assert noop.name == "human" and noop.is_noop and noop.handler is None and noop.call is None


def test_bad_config_in_a_file_is_reported_with_its_path(tmp_path):
    write(tmp_path, {"steps/send_email_step.py": """
        from edge.steps import queue
        config = {"name": "send-email", "triggers": [queue("user.created", config={"maxRetries": "3"})]}
        async def handler(data, ctx):
            pass
    """})
    assert messages(discover(tmp_path)) == ['steps/send_email_step.py: triggers[0].config.maxRetries: expected int, got "3"']


def test_duplicate_step_names_name_both_files(tmp_path):
    step = 'config = {"name": "create", "triggers": [{"type": "queue", "topic": "%s"}]}\ndef handler(d, c):\n    pass\n'
    write(tmp_path, {"steps/a_step.py": step % "a", "steps/b/b_step.py": step % "b",
                     "steps/c_step.py": step.replace("create", "other") % "c"})
    found = discover(tmp_path)
    assert messages(found) == [
        'steps/b/b_step.py: name: duplicate step name "create", also used by steps/a_step.py; step names must be unique'
    ]
    assert [s.name for s in found.steps] == ["other"]


def test_duplicate_routes_name_both_files(tmp_path):
    write(tmp_path, {
        "steps/get_step.py": """
            config = {"name": "get", "triggers": [{"type": "http", "method": "GET", "path": "/todos/:id"}]}
            def handler(req, ctx): pass
        """,
        "steps/read_step.py": """
            config = {"name": "read", "triggers": [{"type": "state"}, {"type": "http", "method": "get", "path": "/todos/{x}"}]}
            def handler(req, ctx): pass
        """,
        "steps/legacy_step.py": """
            config = {"type": "api", "name": "legacy", "method": "POST", "path": "/todos", "emits": []}
            def handler(req, ctx): pass
        """,
        "steps/same_step.py": """
            config = {"name": "same", "triggers": [{"type": "http", "method": "POST", "path": "/todos/"}]}
            def handler(req, ctx): pass
        """,
        "steps/ok_step.py": """
            config = {"name": "ok", "triggers": [{"type": "http", "method": "DELETE", "path": "/todos/:id"}]}
            def handler(req, ctx): pass
        """,
    })
    found = discover(tmp_path)
    assert messages(found) == [
        "steps/read_step.py: triggers[1].path: GET /todos/:x is already served by steps/get_step.py "
        "(GET /todos/:id); change the method or the path of one",
        "steps/same_step.py: triggers[0].path: POST /todos is already served by steps/legacy_step.py "
        "(POST /todos); change the method or the path of one",
    ]
    assert [s.name for s in found.steps] == ["ok"]


def test_duplicate_route_within_one_step(tmp_path):
    write(tmp_path, {"steps/twice_step.py": """
        from edge.steps import http
        config = {"name": "twice", "triggers": [http("GET", "/a/:x"), http("GET", "/a/:y")]}
        def handler(req, ctx): pass
    """})
    assert messages(discover(tmp_path)) == [
        "steps/twice_step.py: triggers[1].path: GET /a/:y is already served by this step (GET /a/:x); change the method or the path of one"
    ]


def test_typescript_steps_are_listed_as_unsupported(tmp_path):
    write(tmp_path, {"steps/create-todo.step.ts": "export const config = {}\n", "steps/api/x.step.js": "\n",
                     "steps/node_modules/lib/y.step.js": "\n", "steps/readme.md": "\n"})
    found = discover(tmp_path)
    assert found.unsupported == ("steps/api/x.step.js", "steps/create-todo.step.ts")
    assert found.warnings == (
        "steps/api/x.step.js: not supported yet (edge runs Python steps only); port it to Python as x_step.py or remove it",
        "steps/create-todo.step.ts: not supported yet (edge runs Python steps only); "
        "port it to Python as create_todo_step.py or remove it",
    )
    assert found.errors == () and found.steps == ()


def test_motia_1_file_names_and_step_definition_objects(tmp_path):
    write(tmp_path, {
        "steps/greet.step.py": """
            class StepDefinition:
                def __init__(self, config, handler):
                    self.config, self.handler = config, handler

            async def _greet(req, ctx):
                return "hi"

            greet = StepDefinition({"name": "greet", "triggers": [{"type": "http", "method": "GET", "path": "/greet"}]}, _greet)
        """,
    })
    found = discover(tmp_path)
    assert messages(found) == []
    (greet,) = found.steps
    assert (greet.name, greet.module, greet.file) == ("greet", "steps.greet_step", "steps/greet.step.py")


def test_stream_errors(tmp_path):
    write(tmp_path, {
        "steps/a_stream.py": 'config = {"name": "todos"}\n',
        "steps/b_stream.py": 'config = {"name": "todos"}\n',
        "steps/c_stream.py": 'config = {"name": "c", "base_config": {"storageType": "redis"}}\n',
    })
    found = discover(tmp_path)
    assert messages(found) == [
        'steps/c_stream.py: base_config.storageType: expected one of "default", "memory", got "redis"',
        'steps/b_stream.py: name: duplicate stream name "todos", also used by steps/a_stream.py; stream names must be unique',
    ]
    assert found.streams == ()


def test_failing_package_init_is_reported_once(tmp_path):
    write(tmp_path, {
        "steps/pkg/__init__.py": "raise RuntimeError('boom')\n",
        "steps/pkg/a_step.py": "config = {}\n",
        "steps/pkg/b_step.py": "config = {}\n",
    })
    assert messages(discover(tmp_path)) == ["steps/pkg/__init__.py: line 1: RuntimeError: boom"]


def test_each_file_runs_once_even_when_another_step_imports_it(tmp_path):
    write(tmp_path, {
        "counter.py": "RUNS = []\n",
        "steps/a_step.py": """
            import counter
            from steps.b_step import config as b_config
            counter.RUNS.append("a")
            config = {"name": "a", "triggers": [{"type": "state"}]}
            def handler(i, c): pass
        """,
        "steps/b_step.py": """
            import counter
            counter.RUNS.append("b")
            config = {"name": "b", "triggers": [{"type": "state"}]}
            def handler(i, c): pass
        """,
    })
    found = discover(tmp_path)
    assert [s.name for s in found.steps] == ["a", "b"]
    assert sys.modules["counter"].RUNS == ["b", "a"]


async def test_rediscovery_sees_changed_added_and_removed_files(tmp_path):
    write(tmp_path, {
        "steps/util.py": "GREETING = 'hello'\n",
        "steps/hello_step.py": """
            from .util import GREETING
            config = {"name": "hello", "triggers": [{"type": "http", "method": "GET", "path": "/hello"}]}
            async def handler(req, ctx):
                return GREETING
        """,
        "steps/gone_step.py": 'config = {"name": "gone", "triggers": [{"type": "state"}]}\ndef handler(i, c): pass\n',
    })
    first = discover(tmp_path)
    assert await call_handler(first.step("hello"), None, None) == "hello"
    write(tmp_path, {
        "steps/util.py": "GREETING = 'good morning'\n",
        "steps/hello_step.py": """
            from .util import GREETING
            config = {"name": "hello", "triggers": [{"type": "http", "method": "GET", "path": "/hi"}]}
            async def handler(req, ctx):
                return GREETING + "!"
        """,
        "steps/new_step.py": 'config = {"name": "new", "triggers": [{"type": "state"}]}\ndef handler(i, c): pass\n',
    })
    (tmp_path / "steps/gone_step.py").unlink()
    second = discover(tmp_path)
    assert [s.name for s in second.steps] == ["hello", "new"]
    assert second.step("hello").http_triggers[0].path == "/hi"
    assert await call_handler(second.step("hello"), None, None) == "good morning!"
    assert "steps.gone_step" not in sys.modules
    assert await call_handler(first.step("hello"), None, None) == "hello"  # old objects keep working


def test_rediscovery_of_another_project_with_the_same_folder_names(tmp_path):
    one = write(tmp_path / "one", {"helper.py": "WHO = 'one'\n", "steps/a_step.py": """
        import helper
        config = {"name": helper.WHO, "triggers": [{"type": "state"}]}
        def handler(i, c): pass
    """})
    two = write(tmp_path / "two", {"helper.py": "WHO = 'two'\n", "steps/a_step.py": """
        import helper
        config = {"name": helper.WHO, "triggers": [{"type": "state"}]}
        def handler(i, c): pass
    """})
    assert [s.name for s in discover(one).steps] == ["one"]
    assert [s.name for s in discover(two).steps] == ["two"]
    assert [s.name for s in discover(one).steps] == ["one"]


def test_steps_folder_outside_the_project_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        discover(tmp_path / "p", dirs=("../elsewhere",))
    assert str(info.value) == f"../elsewhere: the steps folder must be a folder inside the project {(tmp_path / 'p').resolve()}"


def test_importing_edge_steps_runs_no_user_code():
    import subprocess

    code = "import sys, edge, edge.steps; print(sorted(m for m in sys.modules if m.split('.')[0] in ('steps', 'src')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


# -- the model -------------------------------------------------------------------------------

def test_step_accessors_and_trigger_info():
    fields = parse_step_config({"name": "a", "triggers": [http("GET", "/a/{id}"), queue("t1"), queue("t2"), cron("* * * * *")],
                                "enqueues": ["x", {"topic": "y"}]}, file=F)
    step = Step(**fields, handler=None, file=F, module="steps.create_step")
    assert [t.path for t in step.http_triggers] == ["/a/:id"]
    assert step.subscribes == ("t1", "t2")
    assert [t.expression for t in step.cron_triggers] == ["* * * * *"]
    assert step.state_triggers == () and step.stream_triggers == ()
    assert step.enqueue_topics == frozenset({"x", "y"})
    assert [t.info() for t in step.triggers] == [
        {"type": "http", "index": 0, "method": "GET", "path": "/a/:id"},
        {"type": "queue", "index": 1, "topic": "t1"},
        {"type": "queue", "index": 2, "topic": "t2"},
        {"type": "cron", "index": 3, "expression": "* * * * *"},
    ]
    assert msgspec.to_builtins(step.triggers[1])["type"] == "queue"  # tagged union


# -- calling handlers ------------------------------------------------------------------------

async def test_call_handler_by_signature():
    async def two(input, ctx):
        return ("two", input, ctx)

    def sync_two(input, ctx):
        return ("sync", input, ctx)

    async def one(input):
        return ("one", input)

    def zero():
        return "zero"

    def with_default(input, ctx=None, extra=1):
        return ("default", input, ctx)

    def star(*args):
        return args

    assert await call_handler(two, 1, "ctx") == ("two", 1, "ctx")
    assert await call_handler(sync_two, 1, "ctx") == ("sync", 1, "ctx")
    assert await call_handler(one, 1, "ctx") == ("one", 1)
    assert await call_handler(zero, 1, "ctx") == "zero"
    assert await call_handler(with_default, 1, "ctx") == ("default", 1, "ctx")
    assert await call_handler(star, 1, "ctx") == (1, "ctx")


async def test_call_handler_with_methods_partials_and_callable_objects():
    class Handlers:
        async def on(self, input, ctx):
            return ("method", input)

        async def __call__(self, input):
            return ("object", input)

    async def base(prefix, input, ctx):
        return (prefix, input)

    assert prepare_handler(Handlers().on).is_async
    assert await call_handler(Handlers().on, 1, None) == ("method", 1)
    assert await call_handler(Handlers(), 2, None) == ("object", 2)
    assert await call_handler(functools.partial(base, "p"), 3, None) == ("p", 3)
    assert prepare_handler(functools.partial(base, "p")).is_async


async def test_sync_handler_returning_an_awaitable_is_awaited():
    async def inner(input):
        return input * 2

    def wrapper(input, ctx):
        return inner(input)

    call = prepare_handler(wrapper)
    assert not call.is_async
    assert await call_handler(call, 21, None) == 42


async def test_legacy_cron_one_argument_handler_gets_ctx(tmp_path):
    write(tmp_path, {
        "steps/legacy_cron_step.py": """
            config = {"type": "cron", "name": "legacy", "cron": "* * * * *"}
            async def handler(context):
                return ("ctx", context)
        """,
        "steps/native_cron_step.py": """
            config = {"name": "native", "triggers": [{"type": "cron", "expression": "* * * * *"}]}
            async def handler(input):
                return ("input", input)
        """,
    })
    found = discover(tmp_path)
    assert found.step("legacy").call.ctx_only and not found.step("native").call.ctx_only
    assert await call_handler(found.step("legacy"), None, "CTX") == ("ctx", "CTX")
    assert await call_handler(found.step("native"), None, "CTX") == ("input", None)
    assert await call_handler(lambda c: c, None, "CTX", cron_ctx_only=True) == "CTX"


def test_prepare_handler_errors():
    def too_many(a, b, c):
        pass

    def kw_only(input, ctx, *, needed):
        pass

    with pytest.raises(ConfigError) as info:
        prepare_handler(too_many, where="steps/x_step.py: handler")
    assert str(info.value) == (
        "steps/x_step.py: handler: takes (a, b, c); a handler is called as handler(input, ctx), handler(input) or handler()"
    )
    with pytest.raises(ConfigError) as info:
        prepare_handler(kw_only)
    assert str(info.value) == (
        "handler: takes (input, ctx, *, needed); a handler is called as handler(input, ctx), handler(input) or handler()"
    )
    with pytest.raises(ConfigError) as info:
        prepare_handler("nope")
    assert str(info.value) == "handler: expected a function handler(input, ctx), got str"


# -- a Motia 0.x project, unchanged ------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "projects"


async def test_motia_0x_fixture_project_loads_unchanged():
    found = discover(FIXTURES / "motia_0x")
    assert messages(found) == []
    assert [s.name for s in found.steps] == [
        "PlaceOrder (steps/orders/place_order_api_step.py)", "PlaceOrder (steps/orders/place_order_worker_step.py)",
        "ApiTrigger", "HumanReview", "ProcessFoodOrder", "StateAuditJob",
    ]
    assert {s.display_name for s in found.steps if s.label} == {"PlaceOrder"}
    api = found.step("ApiTrigger")
    assert api.http_triggers[0].body_schema["required"] == ["name", "photoUrl"]
    assert api.enqueues == (Enqueue("process-food-order", "food order", True),)
    process = found.step("ProcessFoodOrder")
    assert process.queue_triggers[0].config == QueueConfig(max_retries=5, visibility_timeout=60, timeout=10)
    assert found.step("StateAuditJob").call.ctx_only
    assert found.step("HumanReview").is_noop
    assert [(s.name, s.storage_type) for s in found.streams] == [("pets", "default")]
