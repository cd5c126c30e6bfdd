from edge_app.run import main

raise SystemExit(main(None, "python -m edge_app"))
