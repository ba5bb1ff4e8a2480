"""Discovery: find step and stream files, import them, validate them, return a value.

Files are imported as modules of packages rooted at the project directory
(``steps/todos/create_step.py`` -> ``steps.todos.create_step``), so ``from .db import x``
and ``from steps.shared.db import x`` both work, with or without ``__init__.py``: missing
packages are made up as namespace-like modules whose ``__path__`` is the directory.

``discover`` can run again after files change: it first drops from ``sys.modules`` every
module of the step roots (``steps``, ``steps.*``, ``src``, ...) and every project module a
previous discovery imported (marked with ``__edge_project__``).
Step and stream files are compiled from source on every discovery (never from a stale
``.pyc``).

Motia projects run unchanged: both file namings (``*_step.py`` and ``*.step.py``), a ``.env``
at the project root (loaded first, never overriding what is set), Workbench UI files
(``*.step.tsx``) skipped quietly, Motia 1.0's ``Stream("name")`` objects declaring their
stream without a ``*_stream.py``, and Motia 0.x steps that share a name (0.x keyed steps by
file: each runs, as ``"<name> (<file>)"``).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import linecache
import os
import re
import sys
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from ..errors import ConfigError
from ..schema import compile_schema
from .call import prepare_handler
from .config import parse_step_config, parse_stream_config
from .dotenv import load_dotenv
from .model import Step, StreamDef

__all__ = ["StepError", "Discovery", "discover", "DEFAULT_DIRS", "compile_trigger_schemas"]

DEFAULT_DIRS = ("steps", "src")

# Attribute set on project modules a discovery imported (value: the project dir), so the
# next discovery can drop them from sys.modules.
_MARK = "__edge_project__"
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "dist-packages"}
# Step/stream files in languages edge does not run (yet): listed, never silently ignored.
_FOREIGN = re.compile(r"[._](step|stream)\.(ts|js|mjs|cjs|rb)\Z")
# Motia Workbench UI files (``start.step.tsx``): not steps; skipped without a word.
_WORKBENCH = re.compile(r"[._](step|stream)\.(tsx|jsx)\Z")
#: Handler annotations that ask for streaming HTTP args (edge.server.streaming).
_STREAM_ARGS = ("HttpStreamArgs", "MotiaHttpArgs", "ApiStreamRequest")
_EDGE_DIR = Path(__file__).resolve().parent.parent


class StepError(msgspec.Struct, frozen=True):
    """One problem found by discovery.

    ``message`` is the whole line to show (it starts with ``file``); ``traceback`` is the
    formatted traceback of an import failure ("" otherwise).
    """

    file: str
    message: str
    traceback: str = ""


class Discovery(msgspec.Struct, frozen=True, kw_only=True):
    """What discovery found. ``errors`` empty means every step file is usable."""

    project_dir: Path
    steps: tuple[Step, ...] = ()
    streams: tuple[StreamDef, ...] = ()
    errors: tuple[StepError, ...] = ()
    unsupported: tuple[str, ...] = ()  # e.g. ("steps/legacy.step.ts",)

    @property
    def ok(self) -> bool:
        return not self.errors

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def stream(self, name: str) -> StreamDef | None:
        return next((s for s in self.streams if s.name == name), None)

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per unsupported file, saying what to do about it."""
        return tuple(_unsupported_message(f) for f in self.unsupported)


def _unsupported_message(file: str) -> str:
    name = file.rsplit("/", 1)[-1]
    match = _FOREIGN.search(name)
    stem = name[: match.start()] if match else name
    kind = match.group(1) if match else "step"
    python_name = re.sub(r"[^A-Za-z0-9_]", "_", stem) + f"_{kind}.py"
    return f"{file}: not supported yet (edge runs Python {kind}s only); port it to Python as {python_name} or remove it"


class _FreshLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time, so a rediscovery never runs a stale .pyc."""

    def get_code(self, fullname: str) -> Any:
        return self.source_to_code(self.get_data(self.path), self.path)


# -- sys.modules bookkeeping ----------------------------------------------------------------

def _excluded(file: str) -> bool:
    """Modules that belong to Python, installed packages or edge itself, even inside the project."""
    path = Path(file)
    if _SKIP_DIRS & set(path.parts):
        return True
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        if path.is_relative_to(prefix):
            return True
    return path.is_relative_to(_EDGE_DIR)


def _purge(roots: Iterable[str]) -> None:
    """Forget the step roots and every project module an earlier discovery imported.

    Modules of any earlier project go too: they would shadow this project's same-named
    ones (``import helper``). Already-built Steps keep working; they hold their modules.
    """
    prefixes = tuple(f"{r}." for r in roots)
    roots = set(roots)
    for name, module in list(sys.modules.items()):
        marked = module is not None and _MARK in getattr(module, "__dict__", {})
        if name in roots or name.startswith(prefixes) or marked:
            del sys.modules[name]


def _mark_new(before: set[str], project_dir: Path) -> None:
    key = str(project_dir)
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is None or not file or name == "motia" or name.startswith("motia."):
            continue
        if Path(file).resolve().is_relative_to(project_dir) and not _excluded(file):
            setattr(module, _MARK, key)


# -- importing ------------------------------------------------------------------------------

class _Importer:
    """Imports files of one project as modules of packages rooted at the project dir."""

    def __init__(self, project_dir: Path):
        self.project_dir = project_dir
        self.errors: list[StepError] = []
        self.failed_packages: set[str] = set()

    def rel(self, path: Path | str) -> str:
        path = Path(path)
        try:
            return path.resolve().relative_to(self.project_dir).as_posix()
        except ValueError:
            return str(path)

    def module_name(self, path: Path) -> str:
        parts = list(path.relative_to(self.project_dir).parts)
        stem = parts[-1][: -len(".py")]
        parts[-1] = stem.replace(".", "_")  # greet.step.py (Motia 1.0 naming) -> greet_step
        return ".".join(parts)

    def package(self, name: str, directory: Path) -> ModuleType | None:
        """The package module for ``directory`` (real if it has __init__.py, else made up)."""
        if name in self.failed_packages:
            return None
        module = sys.modules.get(name)
        if module is not None:
            return module
        parent_name, _, child = name.rpartition(".")
        parent = self.package(parent_name, directory.parent) if parent_name else None
        if parent_name and parent is None:
            return None
        init = directory / "__init__.py"
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                name, init, loader=_FreshLoader(name, str(init)), submodule_search_locations=[str(directory)]
            )
        else:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(directory)]
        module = importlib.util.module_from_spec(spec)
        if not self.execute(module, init if init.is_file() else None):
            self.failed_packages.add(name)
            return None
        if parent is not None:
            setattr(parent, child, module)
        return module

    def execute(self, module: ModuleType, path: Path | None) -> bool:
        sys.modules[module.__name__] = module
        if path is None:
            return True
        try:
            module.__spec__.loader.exec_module(module)  # type: ignore[union-attr]
        except (Exception, SystemExit) as exc:
            sys.modules.pop(module.__name__, None)
            self.errors.append(self.import_error(exc, path))
            return False
        return True

    def load(self, path: Path) -> ModuleType | None:
        name = self.module_name(path)
        existing = sys.modules.get(name)
        if existing is not None:  # imported already by another step file
            if Path(getattr(existing, "__file__", "") or "").resolve() != path.resolve():
                other = self.rel(existing.__file__) if getattr(existing, "__file__", None) else name
                self.errors.append(StepError(self.rel(path), f"{self.rel(path)}: module name {name} is already taken by {other}; rename one of the files"))
                return None
            return existing
        parent_name, _, child = name.rpartition(".")
        parent = self.package(parent_name, path.parent)
        if parent is None:
            return None  # the package's __init__.py failed; that error is reported already
        spec = importlib.util.spec_from_file_location(name, path, loader=_FreshLoader(name, str(path)))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        if not self.execute(module, path):
            return None
        setattr(parent, child, module)
        return module

    def import_error(self, exc: BaseException, path: Path) -> StepError:
        """``steps/x_step.py: line 3: NameError: name 'y' is not defined`` (+ where it was raised)."""
        rel = self.rel(path)
        target = str(path.resolve())

        def same(filename: str | None) -> bool:
            return bool(filename) and os.path.realpath(filename) == target  # type: ignore[arg-type]

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
        mine = [f for f in frames if same(f.filename)]
        line = mine[-1].lineno if mine else None
        origin: tuple[str, int | None] | None = None
        if isinstance(exc, SyntaxError) and exc.filename:
            if same(exc.filename):
                line = exc.lineno
            else:
                origin = (exc.filename, exc.lineno)
        elif frames and not same(frames[-1].filename):
            origin = (frames[-1].filename, frames[-1].lineno)
        if isinstance(exc, SyntaxError):
            detail = exc.msg
        else:
            lines = str(exc).strip().splitlines()
            detail = lines[0] if lines else ""
        what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        where = f"line {line}" if line else "import failed"
        message = f"{rel}: {where}: {what}"
        if origin is not None:
            message += f" (in {self.rel(origin[0])}, line {origin[1]})"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return StepError(rel, message, text)


# -- the public entry point -----------------------------------------------------------------

def _walk(root: Path) -> Iterable[Path]:
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(files):
            yield Path(directory, name)


def _kind(name: str) -> str | None:
    if _WORKBENCH.search(name):
        return None
    if name.endswith(("_step.py", ".step.py")):
        return "step"
    if name.endswith(("_stream.py", ".stream.py")):
        return "stream"
    if _FOREIGN.search(name):
        return "foreign"
    return None


def _exports(module: ModuleType) -> tuple[Any, Any]:
    """``config`` and ``handler``; also a Motia ``step(config, handler)`` definition object."""
    config, handler = getattr(module, "config", None), getattr(module, "handler", None)
    if handler is None and config is not None and hasattr(config, "handler") and hasattr(config, "config"):
        return config.config, config.handler  # config = step({...}, handler)
    if config is None and handler is None:
        found = [v for k, v in vars(module).items()
                 if not k.startswith("_") and not isinstance(v, (type, ModuleType))
                 and callable(getattr(v, "handler", None)) and getattr(v, "config", None) is not None]
        if len(found) == 1:
            return found[0].config, found[0].handler
    return config, handler


def discover(project_dir: Path | str, dirs: Sequence[str] = DEFAULT_DIRS) -> Discovery:
    """Find, import and validate every step and stream under ``project_dir/<dirs>``.

    Never raises for a bad step file: each problem becomes a :class:`StepError` and the
    other steps are still returned. A step whose name or HTTP route clashes with another
    is left out, together with the other one (the error names both files).

    Args:
        project_dir: the project root; it is put on ``sys.path``.
        dirs: folders (relative to the project) searched recursively; missing ones are skipped.

    Raises:
        ConfigError: a folder in ``dirs`` lies outside the project.
    """
    project_dir = Path(project_dir).resolve()
    roots, search = [], []
    for d in dirs:
        root = (project_dir / d).resolve()
        if not root.is_relative_to(project_dir) or root == project_dir:
            raise ConfigError(f"{d}: the steps folder must be a folder inside the project {project_dir}")
        roots.append(root.relative_to(project_dir).parts[0])
        if root.is_dir() and root not in search:
            search.append(root)

    _purge(roots)
    load_dotenv(project_dir)  # before any step is imported: module-level os.environ reads see it
    # First on sys.path, so the project's own top-level modules win over same-named others.
    while str(project_dir) in sys.path:
        sys.path.remove(str(project_dir))
    sys.path.insert(0, str(project_dir))
    importlib.invalidate_caches()
    linecache.checkcache()

    files: dict[Path, str] = {}
    for root in search:
        for path in _walk(root):
            kind = _kind(path.name)
            if kind:
                files.setdefault(path.resolve(), kind)

    importer = _Importer(project_dir)
    unsupported = tuple(importer.rel(p) for p, k in sorted(files.items()) if k == "foreign")
    before = set(sys.modules)
    loaded: dict[str, list[tuple[Path, ModuleType]]] = {"stream": [], "step": []}
    for kind in ("stream", "step"):  # streams first: steps may import them
        for path in sorted(p for p, k in files.items() if k == kind):
            module = importer.load(path)
            if module is not None:
                loaded[kind].append((path, module))
    _mark_new(before, project_dir)

    errors = importer.errors
    streams = [s for s in (_build_stream(p, m, importer, errors) for p, m in loaded["stream"]) if s]
    steps = [s for s in (_build_step(p, m, importer, errors) for p, m in loaded["step"]) if s]
    streams = _drop_duplicates(streams, errors, "stream")
    streams += _declared_streams(before, {s.name for s in streams}, importer, errors)
    steps = _name_legacy_duplicates(steps)
    steps = _drop_duplicates(steps, errors, "step")
    steps = _drop_route_clashes(steps, errors)
    return Discovery(
        project_dir=project_dir,
        steps=tuple(steps),
        streams=tuple(streams),
        errors=tuple(errors),
        unsupported=unsupported,
    )


def _build_step(path: Path, module: ModuleType, importer: _Importer, errors: list[StepError]) -> Step | None:
    rel = importer.rel(path)
    config, handler = _exports(module)
    try:
        if config is None:
            raise ConfigError(f'{rel}: config: required; define config = {{"name": "...", "triggers": [...]}} in the file')
        fields = parse_step_config(config, file=rel)
        schemas = compile_trigger_schemas(fields["triggers"], rel)
        call = None
        if handler is not None or fields["triggers"]:
            if handler is None:
                raise ConfigError(f"{rel}: handler: required; define async def handler(input, ctx) in the file")
            legacy_cron = fields["dialect"] != "1.0" and any(t.type == "cron" for t in fields["triggers"])
            call = prepare_handler(handler, cron_ctx_only=legacy_cron, where=f"{rel}: handler")
    except ConfigError as exc:
        errors.append(StepError(rel, str(exc)))
        return None
    http_stream = call is not None and any(t.type == "http" for t in fields["triggers"]) and _wants_stream(handler)
    return Step(**fields, handler=handler, file=rel, module=module.__name__, path=path, call=call,
                http_stream=http_stream, schemas=schemas)


def compile_trigger_schemas(triggers, rel: str) -> dict:
    """Each trigger's ``bodySchema`` (HTTP) or ``input`` schema, compiled, by trigger index
    (``responseSchema`` is left to OpenAPI, which alone reads it: a keyword edge does not check
    there must not stop a ported file from loading).

    Raises:
        ConfigError: a schema that cannot be compiled, named by its key in the file.
    """
    out = {}
    for trigger in triggers:
        key, spec = "bodySchema", getattr(trigger, "body_schema", None)
        if spec is None:
            key, spec = "input", getattr(trigger, "input", None)
        if spec is not None:
            out[trigger.index] = compile_schema(spec, where=f"{rel}: triggers[{trigger.index}].{key}")
    return out


def _wants_stream(handler: Any) -> bool:
    """Whether the handler's first parameter is annotated as streaming HTTP args
    (``HttpStreamArgs``, Motia's ``MotiaHttpArgs`` / ``ApiStreamRequest``). Annotations are read
    as written (strings under ``from __future__ import annotations``), never evaluated."""
    import inspect

    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params or params[0].annotation is inspect.Parameter.empty:
        return False
    annotation = params[0].annotation
    if isinstance(annotation, str):
        text = annotation
    else:
        origin = getattr(annotation, "__origin__", None) or annotation
        text = getattr(origin, "__name__", "") or repr(annotation)
    return any(name in text for name in _STREAM_ARGS)


def _declared_streams(before: set[str], known: set[str], importer: _Importer,
                      errors: list[StepError]) -> list[StreamDef]:
    """Streams declared in code only: Motia 1.0's module-level ``Stream("todo")`` (or
    ``Stream(StreamConfig(...))``) in any project module discovery imported. A ``*_stream.py``
    of the same name wins; the first declaration of a name counts."""
    out: list[StreamDef] = []
    seen = set(known)
    for name in sorted(set(sys.modules) - before):
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is None or not file or _MARK not in getattr(module, "__dict__", {}):
            continue
        for value in list(vars(module).values()):
            declares = getattr(type(value), "__edge_stream_config__", None)
            if declares is None:
                continue
            config = declares(value)
            if config.get("name") in seen:
                continue
            rel = importer.rel(file)
            try:
                fields = parse_stream_config(config, file=rel)
            except ConfigError as exc:
                errors.append(StepError(rel, str(exc)))
                seen.add(config.get("name"))
                continue
            seen.add(fields["name"])
            out.append(StreamDef(**fields, file=rel, module=name, path=Path(file)))
    return out


def _name_legacy_duplicates(steps: list[Step]) -> list[Step]:
    """Motia 0.x keyed steps by file, so 0.x projects reuse a name for an API step and its
    worker. When every step sharing a name is a 0.x step, each gets a distinct identity,
    ``"<name> (<file>)"``; its logs still show the name (``Step.label``)."""
    by_name: dict[str, list[Step]] = {}
    for step in steps:
        by_name.setdefault(step.name, []).append(step)
    out = []
    for step in steps:
        group = by_name[step.name]
        if len(group) > 1 and all(s.dialect != "1.0" for s in group):
            step = msgspec.structs.replace(step, name=f"{step.name} ({step.file})", label=step.name)
        out.append(step)
    return out


def _build_stream(path: Path, module: ModuleType, importer: _Importer, errors: list[StepError]) -> StreamDef | None:
    rel = importer.rel(path)
    config = getattr(module, "config", None)
    try:
        if config is None:
            raise ConfigError(f'{rel}: config: required; define config = {{"name": "todos", "schema": {{...}}}} in the file')
        fields = parse_stream_config(config, file=rel)
    except ConfigError as exc:
        errors.append(StepError(rel, str(exc)))
        return None
    return StreamDef(**fields, file=rel, module=module.__name__, path=path)


def _drop_duplicates(items: list[Any], errors: list[StepError], kind: str) -> list[Any]:
    by_name: dict[str, list[Any]] = {}
    for item in items:
        by_name.setdefault(item.name, []).append(item)
    for name, group in by_name.items():
        for other in group[1:]:
            errors.append(StepError(other.file, f'{other.file}: name: duplicate {kind} name "{name}", also used by {group[0].file}; {kind} names must be unique'))
    return [item for item in items if len(by_name[item.name]) == 1]


def _drop_route_clashes(steps: list[Step], errors: list[StepError]) -> list[Step]:
    seen: dict[tuple[str, str], tuple[Step, Any]] = {}
    bad: set[str] = set()
    for step in steps:
        for trigger in step.http_triggers:
            where = "path" if step.dialect == "0.x" else f"triggers[{trigger.index}].path"
            first = seen.setdefault(trigger.route_key, (step, trigger))
            if first[0] is step and first[1] is trigger:
                continue
            owner = "this step" if first[0] is step else first[0].file
            errors.append(StepError(step.file, (
                f"{step.file}: {where}: {trigger.method} {trigger.path} is already served by {owner} "
                f"({first[1].method} {first[1].path}); change the method or the path of one"
            )))
            bad.update((step.name, first[0].name))
    return [s for s in steps if s.name not in bad]
