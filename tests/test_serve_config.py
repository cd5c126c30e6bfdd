"""`edgeclf serve`'s command line becomes one frozen ServeConfig (serve.serve_config), and make_app
builds the server from it: the token, the limits and the host rules reach the app."""

import dataclasses

import pytest

from edgeclf.edge_app.sources import CameraSettings
from edgeclf.edge_app.web import serve
from edgeclf.edge_app.web.serve import ServeConfig

GOOD_TOKEN = "0123456789abcdef"


def config_of(argv, environ=None):
    parser = serve.build_parser()
    return serve.serve_config(parser, parser.parse_args(argv), environ or {})


def test_the_command_line_becomes_a_frozen_config(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(GOOD_TOKEN + "\n")
    argv = ["--host", "0.0.0.0", "--port", "0", "--threads", "3", "--max-upload-mb", "1.5", "--fps", "10"]
    argv += ["--vflip", "--token-file", str(token_file), "--source", "0", "--retries", "2", "--history-max-live", "7"]
    config = config_of(argv)
    assert config == ServeConfig(
        host="0.0.0.0",
        port=0,
        threads=3,
        token=GOOD_TOKEN,
        max_upload=1_572_864,
        max_viewers=2,
        source="0",
        camera=CameraSettings(fps=10.0, vflip=True),
        retries=2,
        history_max_live=7,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1
    assert config_of([]) == ServeConfig()  # the parser's defaults are the config's
    assert config_of(["--threads", "2"]).max_viewers == 1  # one thread at least stays free for the API
    assert config_of([], {"EDGECLF_TOKEN": GOOD_TOKEN}).token == GOOD_TOKEN


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--max-viewers", "8"], "--max-viewers 8: must be 0 to 7"),
        (["--max-upload-mb", "0"], "--max-upload-mb 0: must be above 0"),
        (["--fps", "0"], "--fps 0: must be above 0"),
        (["--token", "short"], "--token: the token has 5 characters"),
        (["--port", "70000"], "check --port (0-65535)"),
        (["--base-cost", "2"], "--base-cost needs --base-data"),
        (["--base-data", "base", "--base-cost", "0"], "--base-cost 0: must be above 0 and below 100"),
        (["--base-data", "base", "--base-cost", "nan"], "--base-cost: expected a finite number"),
    ],
)
def test_bad_values_are_usage_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        config_of(argv)
    assert exc.value.code == 2 and words in capsys.readouterr().err


def test_make_app_builds_the_server_from_the_config(converted, tmp_path):
    config = ServeConfig(
        model=converted["int8"], host="0.0.0.0", db=tmp_path / "h.sqlite3", max_upload=123_456, max_pixels=1000
    )
    app, feed, token = serve.make_app(config)
    assert feed is None and token is not None and len(token) >= 20  # another address: a token is generated
    assert app.config["MAX_CONTENT_LENGTH"] == 123_456
    client = app.test_client()
    assert client.get("/api/model").status_code == 401
    card = client.get("/api/model", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert card["file"] == converted["int8"].name
    app, _, token = serve.make_app(dataclasses.replace(config, host="127.0.0.1"))
    assert token is None  # loopback: no token, but only loopback host names (DNS rebinding)
    assert app.test_client().get("/healthz", headers={"Host": "evil.example"}).status_code == 403
    assert app.test_client().get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
