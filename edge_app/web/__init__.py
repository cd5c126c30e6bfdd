"""The web UI served from the device: upload and classify, live view, history, model card (Flask)."""
