"""Entry point of a binary made by ``edge build`` (PyInstaller freezes this file).

The project's steps are bundled as source files under ``<bundle>/_project`` (see
``build/edge.spec``), where discovery imports them exactly as it does from a checkout.
When the binary runs, the defaults change to suit a copied-around executable:

- ``--dir`` defaults to the bundled project (``EDGE_DIR`` or ``--dir`` still point elsewhere);
- ``--data-dir`` defaults to ``./.edge`` in the working directory, not inside the bundle
  (which is a temporary extraction for a onefile binary);
- no bytecode is written next to the bundled sources.

``./app`` runs ``start`` (``edge.cli`` does that when there are no arguments), and so does
``./app --port 8080``: options without a command are ``start``'s.
"""

import os
import sys


def _binary_defaults() -> None:
    bundle = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(__file__)))
    # Flags beat EDGE_* variables, so setting the variables makes these the defaults only.
    if not os.environ.get("EDGE_DIR"):
        os.environ["EDGE_DIR"] = os.path.join(bundle, "_project")  # edge.build.BUNDLE_PROJECT
    if not os.environ.get("EDGE_DATA_DIR"):
        os.environ["EDGE_DATA_DIR"] = ".edge"
    sys.dont_write_bytecode = True
    args = sys.argv[1:]
    if args and args[0].startswith("-") and args[0] not in ("-h", "--help", "--version"):
        sys.argv.insert(1, "start")


if __name__ == "__main__":
    _binary_defaults()
    from edge.cli import main

    main()
