from benchmarks.cli import main

raise SystemExit(main(None, "python -m benchmarks"))
