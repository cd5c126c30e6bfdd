from train.cli import main

raise SystemExit(main(None, "python -m train"))
