# The `motia` compatibility package (Motia 1.0 steps do `from motia import ...`), when installed.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules("motia")
datas = collect_data_files("motia")
