"""``edge build``: freeze the runtime and a project's steps into one executable.

The recipe lives in ``build/`` at the top of the edge checkout: ``edge.spec`` (the
PyInstaller spec), ``entry.py`` (what the binary runs) and ``hooks/``. This module
validates the project, works out what to bundle, writes a manifest for the spec, runs
PyInstaller, checks the result by running it, and writes a systemd unit beside it.

Everything that can be wrong with the input is found before PyInstaller starts (it takes
tens of seconds): a project without steps, a step that fails to import (a module that is not
installed), an ``includeFiles`` pattern that matches nothing, a name that is not a plain file
name, an output folder that cannot be written.

What the binary contains of the project: every ``.py`` file under the step folders
(``steps/``, ``src/``), every other project module the steps import (at import time or
lazily inside a function), and the ``includeFiles`` of each step; they are kept as source
files under ``_project/`` in the bundle, at their paths relative to the project, and
discovery imports them from there as it does from a checkout. Third-party and
standard-library modules those files import are frozen like the runtime's own.

Only this module imports PyInstaller, and only inside :func:`run_pyinstaller`, so
``edge start`` never loads it.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
import re
import hashlib
import logging
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ._format import plural
from .cli import UsageError, extend
from .errors import EdgeError
from .steps.discovery import _MARK, _SKIP_DIRS, _walk

__all__ = ["BuildError", "Plan", "plan_build", "check_toolchain", "run_pyinstaller", "write_unit",
           "token_note", "check_binary", "default_work_dir", "RECIPE_DIR"]

#: build/ at the top of the edge checkout: spec, entry script, hooks.
RECIPE_DIR = Path(__file__).resolve().parent.parent / "build"
#: Where the project's files go inside the bundle; build/entry.py points --dir at it.
BUNDLE_PROJECT = "_project"

#: Standard-library and tooling modules a headless runtime never needs. They are left out
#: unless the project itself imports them (then they are kept).
_EXCLUDES = (
    # GUI, interactive help, tests and docs
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "pydoc", "pydoc_data",
    "unittest", "doctest", "test", "lib2to3", "curses", "_curses", "readline",
    # packaging and installers
    "ensurepip", "venv", "distutils", "_distutils_hack", "pip", "setuptools", "pkg_resources",
    "wheel", "PyInstaller", "_pyinstaller_hooks_contrib", "altgraph",
    # installed next to edge for its tests, never imported by the runtime
    "pytest", "_pytest", "pytest_trio", "pluggy", "httpx", "httpcore", "websockets", "huey",
    "anyio", "pygments",
    # the optional OTLP exporter (edge[otlp], edge/_otlp.py imports it only when configured):
    # protobuf and requests with it would add megabytes; bundled when the project imports it
    "opentelemetry",
    # fallbacks never taken: the C decimal module is always there; xmlrpc only for multiprocessing's
    # unused xmlrpc serializer
    "_pydecimal", "xmlrpc",
    # Windows-only; dateutil (croniter's) tries it and falls back
    "dateutil.tz.win",
    # edge.schema only touches pydantic when a step's schema is a pydantic model
    "pydantic", "pydantic_core", "annotated_types", "typing_inspection",
)

#: Bytecode of the runtime and its libraries is compiled like ``python -OO``: no docstrings
#: and no asserts, ~1.4 MB less RSS and 0.6 MB less binary. The project's own files are
#: still compiled from source at start, by the normal (not optimised) interpreter.
_OPTIMIZE = 2
# A name for <out>/<name>: a plain file name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# Packages collected whole by build/hooks (their submodules are found without scanning).
_RUNTIME_PACKAGES = ("edge", "motia")


class BuildError(EdgeError):
    """The project cannot be built as it is; the message says what to change (exit code 1)."""


@dataclass
class Plan:
    """Everything the spec needs, worked out and validated before PyInstaller runs."""

    name: str
    project: Path
    out: Path
    work: Path
    onedir: bool = False
    runtime_tmpdir: str | None = None
    steps: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    #: (source file, folder inside the bundle)
    datas: list[tuple[str, str]] = field(default_factory=list)
    hiddenimports: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    #: bundle paths (``_project/steps/x_step.py``) the spec must find among its data files
    expect_datas: list[str] = field(default_factory=list)
    included_files: int = 0
    #: time zones the cron triggers name ("" for the device's local zone)
    cron_zones: tuple[str, ...] = ()
    tzdata: bool = False
    #: files discovery lists but does not run (``.step.ts``): not bundled, said so
    warnings: tuple[str, ...] = ()

    @property
    def binary(self) -> Path:
        """The executable: ``out/name``, or ``out/name/name`` for ``--onedir``."""
        return self.out / self.name / self.name if self.onedir else self.out / self.name

    @property
    def unit(self) -> Path:
        return self.out / f"{self.name}.service"


# -- validating and planning (no PyInstaller) ---------------------------------------------

def plan_build(project: Path | str, *, name: str | None = None, out: Path | str | None = None,
               onedir: bool = False, work: Path | str | None = None,
               runtime_tmpdir: str | None = None, tzdata: bool = False) -> Plan:
    """Validate the project and the options and list what goes into the binary.

    Runs discovery (so it imports the project's step files, as ``edge start`` would).

    Raises:
        UsageError: a bad ``--name`` or ``--dir`` (exit code 2).
        BuildError: the project cannot be built (no steps, a step that does not import, an
            ``includeFiles`` pattern matching nothing, an output folder that cannot be written).
    """
    project = Path(project).resolve()
    if not project.is_dir():
        raise UsageError(f"--dir {project}: no such folder; point --dir at the project (the folder holding steps/)")
    name = _check_name(name if name is not None else _default_name(project))
    out = project / "dist" if out is None else Path(out).resolve()
    _check_writable(out, "--out")
    work = default_work_dir(project, name) if work is None else Path(work).resolve()
    _check_writable(work, "--work-dir")

    from .steps import DEFAULT_DIRS, discover

    discovery = discover(project)
    if discovery.errors:
        lines = [error.message for error in discovery.errors]
        if any("ModuleNotFoundError" in line for line in lines):
            lines.append("the binary bundles the packages installed where `edge build` runs: install the "
                         f"missing ones into {sys.prefix} (pip install ...) and build again")
        raise BuildError(f"{plural(len(discovery.errors), 'step file')} failed to load:\n  " + "\n  ".join(lines))
    if not discovery.steps:
        where = ", ".join(str(project / d) for d in DEFAULT_DIRS)
        raise BuildError(f"no steps found under {where}: nothing to build; add a *_step.py file "
                         "or point --dir at the project folder")

    roots = [project / d for d in DEFAULT_DIRS if (project / d).is_dir()]
    sources: set[Path] = {p for root in roots for p in _walk_py(root)}
    sources.update(s.path.resolve() for s in (*discovery.steps, *discovery.streams) if s.path)
    sources.update(_imported_project_modules(project))
    scan = _scan_imports(project, sources)
    sources |= scan.project_files

    datas: list[tuple[str, str]] = []
    for path in sorted(sources):
        datas.append((str(path), _bundle_dir(project, path)))
    included: set[Path] = set()
    for step in discovery.steps:
        included.update(_include_files(project, step))
    included -= sources
    for path in sorted(included):
        datas.append((str(path), _bundle_dir(project, path)))

    hidden = sorted(scan.modules | ({"tzdata"} if tzdata else set()))
    if tzdata and importlib.util.find_spec("tzdata") is None:
        raise BuildError(f"--tzdata: the tzdata package is not installed in {sys.prefix}; pip install tzdata")
    for package in _RUNTIME_PACKAGES:
        if importlib.util.find_spec(package) is not None:
            hidden.append(package)
    wanted = _with_dependencies({m.split(".")[0] for m in hidden})
    excludes = [m for m in _EXCLUDES if m not in wanted]
    expect = [f"{BUNDLE_PROJECT}/{s.file}" for s in (*discovery.steps, *discovery.streams)]
    return Plan(
        name=name, project=project, out=out, work=work, onedir=onedir, runtime_tmpdir=runtime_tmpdir,
        steps=tuple(sorted(s.name for s in discovery.steps)),
        streams=tuple(sorted(s.name for s in discovery.streams)),
        datas=datas, hiddenimports=hidden, excludes=excludes, expect_datas=expect,
        included_files=len(included),
        cron_zones=tuple(sorted({t.timezone or "" for s in discovery.steps for t in s.triggers if t.type == "cron"})),
        tzdata=tzdata,
        warnings=discovery.warnings,
    )


def default_work_dir(project: Path, name: str) -> Path:
    """PyInstaller's work folder: in the user's cache, outside the project (nothing to ignore in git).

    ``$XDG_CACHE_HOME/edge/build/<name>-<hash of the project path>`` (``~/.cache`` by default):
    kept between builds, so rebuilding the same project is faster.
    """
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(str(project).encode()).hexdigest()[:10]
    return Path(cache).resolve() / "edge" / "build" / f"{name}-{digest}"


def _default_name(project: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", project.name).strip("-.") or "app"


def _check_name(name: str) -> str:
    if "/" in name or "\\" in name:
        base = re.split(r"[/\\]", name.rstrip("/\\"))[-1] or "app"
        raise UsageError(f'--name "{name}": a name cannot contain "/"; it is the file name inside --out. '
                         f"Probably you meant --name {base} --out {name.rstrip('/').rpartition('/')[0] or '/'}")
    if not _NAME.match(name):
        raise UsageError(f'--name "{name}": use letters, digits, ".", "_" and "-", starting with a letter '
                         "or digit (it becomes the file name of the binary)")
    return name


def _check_writable(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edge-build-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "a file is in the way (it must be a folder)"
        raise BuildError(f"{option} {folder}: cannot write there: {reason}; choose another folder with {option}") from None


def _walk_py(root: Path) -> Iterator[Path]:
    """The ``.py`` files under ``root``, skipping the folders discovery skips."""
    return (path.resolve() for path in _walk(root) if path.name.endswith(".py"))


def _bundle_dir(project: Path, path: Path) -> str:
    return "/".join((BUNDLE_PROJECT, *path.relative_to(project).parent.parts))


def _imported_project_modules(project: Path) -> set[Path]:
    """Project files discovery imported from outside the step folders (``import helpers``).

    Discovery marks them with ``__edge_project__`` (``_MARK`` in edge/steps/discovery.py).
    """
    found = set()
    for module in list(sys.modules.values()):
        if getattr(module, _MARK, None) == str(project):
            file = getattr(module, "__file__", None)
            if file and file.endswith(".py"):
                found.add(Path(file).resolve())
    return found


def _include_files(project: Path, step) -> set[Path]:
    """The files ``step.include_files`` names (globs relative to the step file)."""
    base = Path(step.path).parent
    found: set[Path] = set()
    for index, pattern in enumerate(step.include_files):
        where = f"{step.file}: includeFiles[{index}]"
        matches = [Path(m) for m in glob.glob(str(base / pattern), recursive=True)]
        files = set()
        for match in matches:
            if match.is_dir():
                files.update(p for p in match.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            elif match.is_file():
                files.add(match)
        if not files:
            rel = base.relative_to(project).as_posix() or "."
            raise BuildError(f'{where}: "{pattern}" matches no file (patterns are relative to the step file, '
                             f"here {rel}/); fix the pattern or remove it")
        for path in files:
            path = path.resolve()
            if not path.is_relative_to(project):
                raise BuildError(f'{where}: "{pattern}" matches {path}, outside the project {project}; '
                                 "included files must live inside the project folder")
            found.add(path)
    return found


# -- what the project's files import ---------------------------------------------------------

@dataclass
class _Scan:
    project_files: set[Path] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)  # third-party and stdlib modules to freeze


def _scan_imports(project: Path, files: Iterable[Path]) -> _Scan:
    """Follow the import statements of the project's files (also those inside functions).

    Project modules they reach are added to the bundle; other modules become hidden
    imports. A module that is not installed is an error unless the import is guarded by
    ``try: ... except ImportError``.

    Raises:
        BuildError: a project file imports a module that is not installed.
    """
    scan = _Scan()
    todo = list(files)
    seen: set[Path] = set()
    missing: list[str] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue  # discovery reported step files already; a broken helper fails at import
        for node, guarded in _imports(tree):
            for name, names in _absolute_names(node, path, project):
                top = name.split(".")[0]
                if top in _RUNTIME_PACKAGES or top == "__future__":
                    continue
                local = _project_file(project, name)
                if local is not None:
                    for sub in names:  # from pkg import module
                        local += _project_file(project, f"{name}.{sub}") or []
                    for file in local:
                        if file not in seen:
                            scan.project_files.add(file)
                            todo.append(file)
                    continue
                if top not in sys.stdlib_module_names and _find(top) is None:
                    if not guarded:
                        rel = path.relative_to(project).as_posix()
                        missing.append(f"{rel}: line {node.lineno}: imports {top}, which is not installed here; "
                                       f"pip install it into {sys.prefix} (the binary bundles what is installed "
                                       "where `edge build` runs) or guard the import with try/except ImportError")
                    continue
                scan.modules.add(name)
                for sub in names:
                    if _find(f"{name}.{sub}") is not None:
                        scan.modules.add(f"{name}.{sub}")
    if missing:
        raise BuildError("\n".join(sorted(set(missing))))
    return scan


def _imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, bool]]:
    """Every Import/ImportFrom node, and whether a ``try`` catching ImportError guards it."""
    def visit(node: ast.AST, guarded: bool) -> Iterator[tuple[ast.stmt, bool]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, guarded
            return
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            catches = any(_catches_import_error(h.type) for h in node.handlers)  # type: ignore[attr-defined]
            for child in node.body:  # type: ignore[attr-defined]
                yield from visit(child, guarded or catches)
            for child in (*node.handlers, *node.orelse, *node.finalbody):  # type: ignore[attr-defined]
                yield from visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, guarded)

    yield from visit(tree, False)


def _catches_import_error(expr: ast.expr | None) -> bool:
    if expr is None:
        return True  # bare except
    names = [e for e in (expr.elts if isinstance(expr, ast.Tuple) else [expr])]
    return any(isinstance(e, ast.Name) and e.id in ("ImportError", "ModuleNotFoundError", "Exception",
                                                     "BaseException") for e in names)


def _absolute_names(node: ast.stmt, path: Path, project: Path) -> Iterator[tuple[str, list[str]]]:
    """``(module, [names imported from it])`` with relative imports resolved to absolute names."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
        return
    assert isinstance(node, ast.ImportFrom)
    names = [a.name for a in node.names if a.name != "*"]
    if not node.level:
        yield node.module or "", names
        return
    package = path.parent.relative_to(project).parts if path.is_relative_to(project) else ()
    if node.level - 1 > len(package):
        return
    base = list(package[: len(package) - (node.level - 1)])
    if node.module:
        yield ".".join([*base, node.module]), names
    else:  # from . import helpers
        for n in names:
            yield ".".join([*base, n]), []


def _project_file(project: Path, name: str) -> list[Path] | None:
    """The project files making up module ``name`` (its packages' ``__init__`` too), or None."""
    parts = name.split(".")
    if not parts or not parts[0]:
        return None
    found: list[Path] = []
    for i in range(1, len(parts) + 1):
        base = project.joinpath(*parts[:i])
        init = base / "__init__.py"
        if base.with_suffix(".py").is_file() and i == len(parts):
            found.append(base.with_suffix(".py").resolve())
        elif init.is_file():
            found.append(init.resolve())
        elif base.is_dir():
            continue  # a folder without __init__.py: discovery makes it a package
        elif i == 1:
            return None  # not a project module at all
        else:
            break  # `from pkg import name` where name is an attribute, not a module
    if not found and not project.joinpath(parts[0]).is_dir():
        return None
    return [f for f in found if not _SKIP_DIRS & set(f.parts) and not f.is_relative_to(Path(sys.prefix).resolve())]


def _with_dependencies(modules: set[str]) -> set[str]:
    """``modules`` plus the top-level modules of every distribution they need, recursively.

    A project that imports pydantic needs pydantic_core too, one that imports httpx needs
    httpcore and anyio: none of those may be excluded.
    """
    from importlib import metadata

    def norm(dist: str) -> str:
        return re.sub(r"[-_.]+", "-", dist).lower()

    by_module = metadata.packages_distributions()
    todo = [norm(d) for m in modules for d in by_module.get(m, ())]
    seen: set[str] = set()
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" not in requirement.replace('"', "").replace("'", ""):
                todo.append(norm(re.split(r"[\s<>=!~;\[(@]", requirement, maxsplit=1)[0]))
    return modules | {m for m, dists in by_module.items() if any(norm(d) in seen for d in dists)}


def _find(name: str):
    try:
        return importlib.util.find_spec(name)
    except Exception:  # finding "a.b" imports package a, which may fail in any way
        return None


# -- running PyInstaller ------------------------------------------------------------------------

def check_toolchain() -> None:
    """Check what PyInstaller needs from this machine before it runs (it takes tens of seconds).

    PyInstaller copies the interpreter's shared library (``libpython3.11.so.1.0``) into the
    binary. Debian's ``python3`` is linked statically and ships that library in a separate
    package, ``libpython3.11``, which a fresh device does not have.

    Raises:
        BuildError: PyInstaller is not installed, or Python's shared library is missing.
    """
    try:
        import PyInstaller.__main__  # noqa: F401  (what run_pyinstaller runs)
        from PyInstaller.depend import bindepend
    except ImportError:
        raise BuildError("PyInstaller is not installed: pip install 'edge[build]' (or pip install pyinstaller) "
                         "into the environment that runs edge build") from None
    try:
        bindepend.get_python_library_path()
    except SystemExit:  # PyInstaller's PythonLibraryNotFoundError
        raise BuildError(missing_python_library_message()) from None


def missing_python_library_message(*, debian: bool | None = None, base_prefix: str | None = None) -> str:
    """What to install when PyInstaller finds no shared library for this Python."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    soname = (sysconfig.get_config_var("INSTSONAME") if sysconfig.get_config_var("Py_ENABLE_SHARED")
              else None) or f"libpython{version}.so.1.0"
    if debian is None:
        debian = os.path.isfile("/etc/debian_version")
    if debian and base_prefix == "/usr":
        return (f"Python's shared library {soname} is not installed, and PyInstaller copies it into the binary: "
                f"sudo apt install libpython{version} (Debian's python3 ships it in that separate package), "
                "then run edge build again")
    return (f"the Python in {base_prefix} has no shared library {soname}, which PyInstaller copies into the "
            "binary: build with a Python compiled with --enable-shared (pyenv: "
            f"PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {version})"
            + (f", or with Debian's /usr/bin/python3 and `sudo apt install libpython{version}`" if debian else ""))


class _Counter(logging.Handler):
    """Counts what PyInstaller logged (to say whether its log is above an error or not)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


def run_pyinstaller(plan: Plan, *, quiet: bool = True) -> Path:
    """Freeze ``plan`` into ``plan.binary``.

    Raises:
        BuildError: PyInstaller is not installed, Python's shared library is missing, the
            recipe is missing, or the build failed.
    """
    check_toolchain()
    import PyInstaller.__main__

    spec = RECIPE_DIR / "edge.spec"
    if not spec.is_file():
        raise BuildError(f"the build recipe is missing ({spec}): edge build runs from an edge checkout, "
                         "which has build/edge.spec, build/entry.py and build/hooks/")
    target = plan.out / plan.name
    if target.is_dir() and not plan.onedir:
        if not (target / "_internal").is_dir():
            raise BuildError(f"{target} is a folder that edge build did not make; remove it or choose another --name")
        shutil.rmtree(target)  # an earlier --onedir build of the same name
    elif target.is_file() and plan.onedir:
        target.unlink()  # an earlier onefile build of the same name
    plan.work.mkdir(parents=True, exist_ok=True)
    manifest = plan.work / f"{plan.name}.manifest.json"
    manifest.write_text(json.dumps({
        "name": plan.name,
        "onedir": plan.onedir,
        "runtime_tmpdir": plan.runtime_tmpdir,
        "entry": str(RECIPE_DIR / "entry.py"),
        "hookspath": str(RECIPE_DIR / "hooks"),
        # edge itself may be an editable install, which PyInstaller cannot always follow
        "pathex": [str(Path(__file__).resolve().parent.parent)],
        "datas": plan.datas,
        "hiddenimports": plan.hiddenimports,
        "excludes": plan.excludes,
        "expect_datas": plan.expect_datas + _runtime_datas(),
        "expect_modules": ["edge.cli", "edge.runtime", "edge.server"],
        "optimize": _OPTIMIZE,
    }, indent=1))
    args = [str(spec), "--noconfirm", "--distpath", str(plan.out), "--workpath", str(plan.work),
            "--log-level", "WARN" if quiet else "INFO", "--", str(manifest)]
    logged = _Counter()
    pyinstaller_log = logging.getLogger("PyInstaller")
    pyinstaller_log.addHandler(logged)
    try:
        PyInstaller.__main__.run(args)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise BuildError(_failure(exc.code, logged.count, plan, quiet)) from None
    except Exception as exc:  # PyInstaller raises plain exceptions for broken packages and hooks
        raise BuildError(f"PyInstaller failed: {type(exc).__name__}: {exc} (the work folder is {plan.work})") from None
    finally:
        pyinstaller_log.removeHandler(logged)
    if not plan.binary.is_file():
        raise BuildError(f"PyInstaller finished but {plan.binary} is missing (the work folder is {plan.work})")
    return plan.binary


def _runtime_datas() -> list[str]:
    """Data files of edge itself the bundle must hold (build/hooks/hook-edge.py collects them)."""
    from .server.console import ASSETS

    return [f"edge/server/console/{name}" for name in ASSETS]


def _failure(code, logged: int, plan: Plan, quiet: bool) -> str:
    """``PyInstaller failed: ...``: its own message, and where to look for more."""
    if isinstance(code, str):
        detail = re.sub(r"^(ERROR: )+", "", code.strip())
    else:
        detail = f"exit status {code}"
    if logged:
        where = "its log is above"
    elif quiet:
        where = "run edge build --verbose for its full log"
    else:
        where = "it logged nothing more"
    return f"PyInstaller failed: {detail} ({where}; the work folder is {plan.work})"


def check_binary(plan: Plan, timeout: float = 60) -> None:
    """Run ``<binary> steps --json`` in an empty folder and compare with what discovery found.

    This is the assertion STACK-NOTES 21 asks for: a frozen app that cannot find its steps
    fails here, at build time, rather than on the device.

    Raises:
        BuildError: the binary does not run, or lists other steps than the project has.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGE_", "PYTHON")) and k != "VIRTUAL_ENV"}
    with tempfile.TemporaryDirectory(prefix="edge-build-check-") as cwd:
        try:
            proc = subprocess.run([str(plan.binary), "steps", "--json"], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"the built binary {plan.binary} does not run: {exc}") from None
    try:
        listed = json.loads(proc.stdout)
        names = tuple(sorted(s["name"] for s in listed["steps"]))
    except (ValueError, KeyError, TypeError):
        raise BuildError(f"the built binary {plan.binary} failed `steps --json` (exit {proc.returncode}):\n"
                         f"{proc.stdout}{proc.stderr}".rstrip()) from None
    if names != plan.steps or listed.get("errors"):
        problems = "\n  ".join(listed.get("errors") or [])
        raise BuildError(f"the built binary {plan.binary} lists steps {list(names)}, expected {list(plan.steps)}"
                         + (f":\n  {problems}" if problems else ""))


# -- the systemd unit ---------------------------------------------------------------------

#: The hardening of the unit (SPEC §11). ``systemd-analyze security --offline=yes`` rates it
#: 1.4 "OK" (tests/test_security.py asserts <= 4.0); docs/security.md says what each line does
#: for a running onefile binary and LMDB, and how it was checked.
_HARDENING = (
    "# Hardening: `systemd-analyze security NAME` rates this unit OK (docs/security.md).",
    "DynamicUser=yes",
    "UMask=0077",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "DevicePolicy=closed",
    "PrivateUsers=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "RemoveIPC=yes",
    "LockPersonality=yes",
    # PyInstaller's bootloader and every extension module (granian, lmdb, msgspec) map their
    # code from files, read+exec, never write+exec: nothing in the runtime needs W^X memory.
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    "SystemCallErrorNumber=EPERM",
    # Every WebSocket and keep-alive connection is a file descriptor; systemd's default soft
    # limit is 1024 (STACK-NOTES).
    "LimitNOFILE=65536",
    "# GPIO, serial ports, I2C/SPI: uncomment what the steps need, then daemon-reload and restart.",
    "# The groups must exist (Raspberry Pi OS has gpio, dialout, i2c, spi); list each device.",
    "#SupplementaryGroups=gpio dialout i2c spi",
    "#PrivateDevices=no",
    "#PrivateUsers=no",
    "#DeviceAllow=/dev/gpiochip0 rw",
    "#DeviceAllow=/dev/ttyUSB0 rw",
    "#DeviceAllow=/dev/ttyAMA0 rw",
    "#DeviceAllow=char-i2c rw",
)


def write_unit(plan: Plan) -> Path:
    """Write ``out/<name>.service``: install the binary as /opt/<name>/<name> to use it as is.

    Its install commands copy from where the build put the files (``--out``, absolute: the
    unit is read later, from any folder) to where ``ExecStart`` runs the binary.
    """
    name = plan.name
    built = plan.out / name
    copy = f"cp -r {shlex.quote(f'{built}/.')}" if plan.onedir else f"cp {shlex.quote(str(built))}"
    lines = [
        "# systemd unit written by `edge build`. Install:",
        f"#   sudo mkdir -p /opt/{name} && sudo {copy} /opt/{name}/",
        f"#   sudo cp {shlex.quote(str(plan.unit))} /etc/systemd/system/ && sudo systemctl enable --now {name}",
        f"# Settings: edit the Environment= lines; secrets (EDGE_TOKEN) go in /etc/default/{name}, mode 0600:",
        f"#   sudo install -m 0600 /dev/null /etc/default/{name}",
        f'#   echo "EDGE_TOKEN=$(openssl rand -hex 16)" | sudo tee /etc/default/{name} >/dev/null',
        "[Unit]",
        f"Description={name} (edge app)",
        "Wants=network-online.target",
        "After=network-online.target time-sync.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart=/opt/{name}/{name} start",
        # StateDirectory creates /var/lib/<name> owned by the service user; data lives there.
        f"StateDirectory={name}" + ("" if plan.onedir else f" {name}/tmp"),
        "StateDirectoryMode=0700",
        f"WorkingDirectory=/var/lib/{name}",
        f"Environment=EDGE_DATA_DIR=/var/lib/{name}/data",
        "# The app's HTTP steps and streams listen on every address; the runtime endpoints",
        f"# (/__edge/...) answer this machine only until EDGE_TOKEN is set in /etc/default/{name}.",
        "Environment=EDGE_HOST=0.0.0.0",
        "Environment=EDGE_PORT=3000",
        "Environment=EDGE_DURABILITY=durable",
    ]
    if not plan.onedir and not plan.runtime_tmpdir:
        lines += [
            "# A onefile binary unpacks itself (~40 MB) on every start; a tmpfs /tmp would hold",
            "# that in RAM for the whole run, so it unpacks on disk, beside the data.",
            f"Environment=TMPDIR=/var/lib/{name}/tmp",
        ]
    lines += [
        f"EnvironmentFile=-/etc/default/{name}",
        *_HARDENING,
        # SIGTERM to the main process only (a onefile bootloader forwards it to the app);
        # whatever is left after TimeoutStopSec is SIGKILLed, children included.
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=20",
        "Restart=on-failure",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    plan.unit.write_text("\n".join(lines))
    return plan.unit


def token_note(plan: Plan) -> str:
    """What ``edge build`` prints about the token: where it goes and how to create that file."""
    name = plan.name
    return (f"edge build: the runtime endpoints (/__edge/...) answer only the device itself until a token is set; "
            f"to allow other machines, create /etc/default/{name} with mode 0600 on the device:\n"
            f"  sudo install -m 0600 /dev/null /etc/default/{name}\n"
            f'  echo "EDGE_TOKEN=$(openssl rand -hex 16)" | sudo tee /etc/default/{name} >/dev/null')


# -- the subcommand ---------------------------------------------------------------------------

def _add_parsers(sub, common) -> None:
    p = sub.add_parser("build", help="freeze the runtime and the steps into one executable (OUT/NAME, default dist/NAME)")
    p.add_argument("--dir", help="project directory (EDGE_DIR, default .)")
    p.add_argument("--name", help="file name of the binary (default: the project folder's name)")
    p.add_argument("--out", help="output folder (default <dir>/dist)")
    p.add_argument("--onedir", action="store_true",
                   help="a folder instead of one file: starts faster and unpacks nothing at start")
    p.add_argument("--runtime-tmpdir", metavar="PATH",
                   help="onefile: where the binary unpacks itself at start (default $TMPDIR or /tmp)")
    p.add_argument("--tzdata", action="store_true",
                   help="bundle IANA time zone data (for devices without /usr/share/zoneinfo)")
    p.add_argument("--work-dir", help="PyInstaller's work folder, kept for faster rebuilds "
                                      "(default ~/.cache/edge/build/NAME-HASH, outside the project)")
    p.add_argument("--verbose", action="store_true", help="show PyInstaller's full log")


def cmd_build(args) -> int:
    if getattr(sys, "frozen", False):
        raise UsageError("a built binary cannot build: run `edge build` where edge is installed with Python")
    if args.runtime_tmpdir and args.onedir:
        raise UsageError("--runtime-tmpdir applies to onefile binaries; --onedir unpacks nothing")
    started = time.monotonic()
    plan = plan_build(args.dir or os.environ.get("EDGE_DIR") or ".", name=args.name, out=args.out,
                      onedir=args.onedir, work=args.work_dir, runtime_tmpdir=args.runtime_tmpdir,
                      tzdata=args.tzdata)
    for warning in plan.warnings:
        print(f"edge build: skipped: {warning}", file=sys.stderr)
    if plan.cron_zones and not plan.tzdata:
        zones = ", ".join(z or "the local zone" for z in plan.cron_zones)
        print(f"edge build: note: cron time zones ({zones}) are read from the device's /usr/share/zoneinfo "
              "(Debian's tzdata package); build with --tzdata to carry them in the binary", file=sys.stderr)
    extra = f", {plural(len(plan.streams), 'stream')}" if plan.streams else ""
    extra += f", {plural(plan.included_files, 'included file')}" if plan.included_files else ""
    check_toolchain()
    print(f"edge build: {plural(len(plan.steps), 'step')}{extra} from {plan.project}; freezing with PyInstaller...",
          file=sys.stderr, flush=True)
    run_pyinstaller(plan, quiet=not args.verbose)
    check_binary(plan)
    unit = write_unit(plan)
    print(token_note(plan), file=sys.stderr)
    size = _size(plan.out / plan.name)
    kind = "onedir" if plan.onedir else "onefile"
    print(f"built {_shown(plan.binary)} ({kind}, {size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s; "
          f"systemd unit {_shown(unit)}")
    return 0


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _shown(path: Path) -> str:
    """``dist/todo`` below the working directory, else the absolute path (not ``../../tmp/...``)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


extend(_add_parsers, build=cmd_build)
