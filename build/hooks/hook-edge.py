# Collect all of edge: the CLI loads subcommand modules (edge.queues_cli, ...) by name and
# services are imported lazily, so static analysis alone would miss some. Data files
# (templates, web UI assets) come along too.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

hiddenimports = collect_submodules("edge")
datas = collect_data_files("edge")
# `./app --version` reads edge's version from its package metadata.
try:
    datas += copy_metadata("edge")
except Exception:  # edge run from a checkout without being pip-installed: no metadata to copy
    pass
