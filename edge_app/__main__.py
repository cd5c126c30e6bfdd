"""`python -m edgeclf.edge_app`: the same `main` as `edgeclf run`."""

import sys

# `python -m edge_app` is gone (issue 20), but from the checkout's root it still finds this folder through the
# current directory: refuse, rather than run a second copy of the code under the old name.
if __spec__ is None or __spec__.name != "edgeclf.edge_app.__main__":
    print("`python -m edge_app` is gone: run `python -m edgeclf.edge_app` or `edgeclf run`", file=sys.stderr)
    raise SystemExit(2)

from edgeclf.edge_app.run import main  # noqa: E402 - not before the check above

raise SystemExit(main(None, "python -m edgeclf.edge_app"))
