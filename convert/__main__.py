from convert.cli import main

raise SystemExit(main(None, "python -m convert"))
