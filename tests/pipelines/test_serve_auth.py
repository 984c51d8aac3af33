"""API keys on the HTTP service, and the page at ``GET /`` without a browser.

Real ``python -m pipelines.serve`` processes with a key file; a real client.
The model is the small one of ``test_serve.py``, fitted once per session.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_serve import FAST_LIGHTGBM, REPO, ServerProcess

from features.battles import CLASSES
from models import PreferenceModel
from pipelines.make_demo_data import make_demo_battles
from pipelines.serving.auth import ApiKeyFileError, is_loopback, read_api_keys

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

KEYS = ["alpha-7f3c9e2b1d", "beta-0a8e6b4f22"]
WRONG = "alpha-7f3c9e2b1e"  # one character off the first key
BATTLE = {
    "id": "b1",
    "prompt": "Why is the sky blue?",
    "response_a": "Rayleigh scattering: short wavelengths scatter more.",
    "response_b": "Because.",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    frame = make_demo_battles(n_rows=300, seed=3)
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        boosters=("lightgbm",),
        booster_params={"lightgbm": FAST_LIGHTGBM},
        n_folds=2,
        seed=0,
    ).fit(frame)
    return model.save(tmp_path_factory.mktemp("auth") / "model")


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(f"# the ops team\n{KEYS[0]}\n\n   {KEYS[1]}  \n# retired: old\n")
    return path


@pytest.fixture(scope="module")
def server(model_dir, key_file, tmp_path_factory):
    log = tmp_path_factory.mktemp("auth-log") / "server.log"
    process = ServerProcess(
        model_dir, log, "--api-key-file", str(key_file)
    ).wait_ready()
    yield process
    process.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _assert_401(response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["status"] == 401
    assert error["field"] == "Authorization"
    assert error["battle_index"] is None
    assert "Bearer" in error["message"] or "key" in error["message"]
    for key in KEYS:
        assert key not in response.text


# ------------------------------------------------------------- the keys
@pytest.mark.parametrize("key", KEYS)
def test_every_key_of_the_file_predicts_what_the_model_predicts(server, model_dir, key):
    response = httpx.post(
        f"{server.url}/v1/predict", json={"battles": [BATTLE]}, headers=_bearer(key)
    )
    assert response.status_code == 200
    got = [response.json()["predictions"][0][name] for name in CLASSES]
    expected = PreferenceModel.load(model_dir).predict_proba([BATTLE])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    model = httpx.get(f"{server.url}/v1/model", headers=_bearer(key))
    assert model.status_code == 200
    assert model.json()["model"] == response.json()["model"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _bearer(WRONG),
        _bearer(KEYS[0][:-1]),
        _bearer(KEYS[0] + "x"),
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": "Bearer"},
        {"Authorization": "# the ops team"},
    ],
    ids=["missing", "wrong", "prefix", "longer", "basic", "empty", "comment-line"],
)
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/model", "/v1/nothing"])
def test_missing_or_wrong_key_gets_401_with_the_json_error_shape(server, headers, path):
    if path == "/v1/predict":
        response = httpx.post(
            f"{server.url}{path}", json={"battles": [BATTLE]}, headers=headers
        )
    else:
        response = httpx.get(f"{server.url}{path}", headers=headers)
    _assert_401(response)


def test_bearer_scheme_is_case_insensitive(server):
    response = httpx.get(
        f"{server.url}/v1/model", headers={"Authorization": f"bearer {KEYS[1]}"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/", "/openapi.json"])
def test_health_probes_page_and_api_description_stay_open(server, path):
    assert httpx.get(f"{server.url}{path}").status_code == 200


def test_api_description_names_the_bearer_scheme_on_the_v1_paths(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["bearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for path in ("/v1/predict", "/v1/model"):
        (operation,) = schema["paths"][path].values()
        assert operation["security"] == [{"bearer": []}]
        assert "401" in operation["responses"]
    for path in ("/healthz", "/readyz", "/metrics"):
        (operation,) = schema["paths"][path].values()
        assert "security" not in operation


def test_metrics_stay_open_by_default_and_count_the_401s(server):
    httpx.get(f"{server.url}/v1/model")
    metrics = httpx.get(f"{server.url}/metrics")
    assert metrics.status_code == 200
    assert re.search(
        r'arena_http_requests_total\{method="GET",route="/v1/model",status="401"\}',
        metrics.text,
    )


def test_keys_never_reach_the_log(server):
    for key in [*KEYS, WRONG]:
        httpx.post(
            f"{server.url}/v1/predict",
            json={"battles": [BATTLE]},
            headers={**_bearer(key), "x-request-id": f"auth-{key[:5]}"},
        )
    httpx.get(f"{server.url}/v1/model", headers={"Authorization": "Basic abc"})
    log = server.log
    assert "auth-alpha" in log and "auth-beta-" in log  # the requests were logged
    for secret in [*KEYS, WRONG, "Bearer", "authorization"]:
        assert secret.lower() not in log.lower()


def test_metrics_auth_and_the_environment_variable_with_two_workers(
    model_dir, key_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("ARENA_API_KEYS_FILE", str(key_file))
    server = ServerProcess(
        model_dir, tmp_path / "server.log", "--workers", "2", "--metrics-auth"
    )
    try:
        server.wait_ready().wait_workers(2)
        for _ in range(6):  # new connections: the kernel spreads them over both
            _assert_401(httpx.get(f"{server.url}/metrics"))
            _assert_401(httpx.post(f"{server.url}/v1/predict", json={}))
            ok = httpx.post(
                f"{server.url}/v1/predict",
                json={"battles": [BATTLE]},
                headers=_bearer(KEYS[0]),
            )
            assert ok.status_code == 200
            assert httpx.get(f"{server.url}/healthz").status_code == 200
        metrics = httpx.get(f"{server.url}/metrics", headers=_bearer(KEYS[1]))
        assert metrics.status_code == 200
        assert "arena_http_requests_total" in metrics.text
        workers = {json.loads(line)["worker"] for line in _access_lines(server.log)}
        assert len(workers) == 2
    finally:
        assert server.stop() in (0, -15)


def _access_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith('{"ts"')]


# ------------------------------------------------------- refusing to start
def _serve(*options: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("ARENA_API_KEYS_FILE", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipelines.serve", "--port", "9", *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_non_loopback_bind_without_keys_refuses_to_start(model_dir, host):
    result = _serve("--model", str(model_dir), "--host", host)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.match(
        rf"error: refusing to listen on {re.escape(host)} without API keys.*"
        r"--api-key-file.*--allow-unauthenticated",
        lines[0],
    )


def test_metrics_auth_without_keys_refuses_to_start(model_dir):
    result = _serve("--model", str(model_dir), "--metrics-auth")
    assert result.returncode == 2
    assert re.search(r"--metrics-auth needs API keys", result.stderr)


@pytest.mark.parametrize(
    ("content", "message"),
    [("# only a comment\n\n   \n", r"holds no key"), (None, r"does not exist")],
    ids=["comments-only", "missing"],
)
def test_bad_key_file_stops_the_server_with_exit_2(
    model_dir, tmp_path, content, message
):
    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    result = _serve("--model", str(model_dir), "--api-key-file", str(path))
    assert result.returncode == 2
    assert re.search(message, result.stderr)
    assert str(path) in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"holds no key"),
        ("# only a comment\n\n   \n", r"holds no key"),
        ("good-key\nbad key here\n", r"line 2: a key must be one word"),
    ],
    ids=["empty", "comments-only", "space-in-key"],
)
def test_key_file_without_a_usable_key_is_refused(tmp_path, content, message):
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ApiKeyFileError, match=message):
        read_api_keys(path)


def test_bad_key_file_from_the_environment_stops_the_server(model_dir, tmp_path):
    path = tmp_path / "keys"
    path.write_text("# nothing\n")
    result = _serve("--model", str(model_dir), env={"ARENA_API_KEYS_FILE": str(path)})
    assert result.returncode == 2
    assert re.search(r"holds no key", result.stderr)


# ------------------------------------------------------- the key file
def test_key_file_skips_blank_lines_and_comments_and_strips(tmp_path):
    path = tmp_path / "keys"
    path.write_text("#a\n  k1  \n\n# k-commented\nk2\r\n")
    assert read_api_keys(path) == ("k1", "k2")


def test_key_file_with_non_ascii_key_is_refused(tmp_path):
    path = tmp_path / "keys"
    path.write_text("clé\n", encoding="utf-8")
    with pytest.raises(ApiKeyFileError, match=r"line 1: a key must be one word"):
        read_api_keys(path)


def test_key_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "keys"
    path.write_bytes(b"\xff\xfe\x00k")
    with pytest.raises(ApiKeyFileError, match=r"is not UTF-8 text"):
        read_api_keys(path)


def test_key_file_that_cannot_be_read_says_so(tmp_path, monkeypatch):
    path = tmp_path / "keys"
    path.write_text("k1\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    # Tests run as root here, where chmod 000 still reads: refuse at the call.
    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(PermissionError, match=r"cannot be read by this user"):
        read_api_keys(path)


def test_key_file_that_is_a_directory_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        read_api_keys(tmp_path)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("my-host", False),
    ],
)
def test_only_loopback_addresses_count_as_local(host, loopback):
    assert is_loopback(host) is loopback


# ------------------------------------------------- the page, no browser
def test_page_is_one_self_contained_html_file_with_a_strict_policy(server):
    response = httpx.get(f"{server.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<body data-auth="on">' in page
    # Nothing loaded from elsewhere: no src/href to another origin, no imports.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    assert re.findall(r"<link[^>]*>", page) == ['<link rel="icon" href="data:,">']
    # A script element ends at the first "</script>", even inside a JS string.
    assert page.count("</script>") == 1
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", policy)


def test_page_inserts_text_as_text_never_as_markup(server):
    script = httpx.get(f"{server.url}/").text.split("<script>", 1)[1]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in script
    assert "textContent" in script
    assert "eval(" not in script and "new Function" not in script


def test_page_renders_the_explanation_keys_and_sends_the_bearer_key(server):
    script = httpx.get(f"{server.url}/").text.split("<script>", 1)[1]
    for key in ("concept", "toward", "weight", "sentence"):
        assert f"item.{key}" in script
    assert '"Bearer " + key' in script
    assert "sessionStorage" in script and "localStorage" not in script
    assert "explain: k" in script


def test_page_without_keys_hides_the_key_field_at_first():
    from pipelines.serving.page import page_html

    assert '<body data-auth="off">' in page_html(api_keys=False)
    assert '<div id="key-box" hidden>' in page_html(api_keys=False)


# ------------------------------------------------- options, Docker, docs
def _args(*argv: str):
    from pipelines import serve

    return serve._parser().parse_args(["--model", "m", *argv])


def test_help_lists_the_access_options_and_the_metrics_default():
    from pipelines import serve

    text = " ".join(serve._parser().format_help().split())
    for option in ("--api-key-file", "--metrics-auth", "--allow-unauthenticated"):
        assert option in text
    assert "ARENA_API_KEYS_FILE" in text
    assert "default: /metrics open" in text


def test_empty_environment_variable_means_no_keys_and_the_flag_wins(monkeypatch):
    from pipelines import serve

    monkeypatch.setenv("ARENA_API_KEYS_FILE", "")
    assert serve._api_key_file(_args()) is None
    monkeypatch.setenv("ARENA_API_KEYS_FILE", "/run/secrets/k")
    assert serve._api_key_file(_args()) == Path("/run/secrets/k")
    assert serve._api_key_file(_args("--api-key-file", "mine")) == Path("mine")


@pytest.mark.parametrize(
    ("argv", "keys", "refused"),
    [
        (("--host", "0.0.0.0"), False, True),
        (("--host", "0.0.0.0"), True, False),
        (("--host", "0.0.0.0", "--allow-unauthenticated"), False, False),
        (("--host", "127.0.0.1"), False, False),
        (("--host", "::1"), False, False),
    ],
)
def test_only_a_non_loopback_bind_without_keys_or_consent_is_refused(
    argv, keys, refused
):
    from pipelines import serve

    reason = serve._check_access(_args(*argv), Path("k") if keys else None)
    assert (reason is not None) is refused


def test_dockerfile_binds_all_addresses_with_the_mounted_key_file():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(
        r"^ENV [^\n]*(?:\\\n[^\n]*)*ARENA_API_KEYS_FILE=/run/secrets/arena_api_keys",
        dockerfile,
        re.M,
    )
    command = re.search(r"^CMD (\[.*\])", dockerfile, re.M).group(1)
    assert "0.0.0.0" in json.loads(command)
    assert "--allow-unauthenticated" not in command
    assert "-v " in dockerfile and ":/run/secrets/arena_api_keys:ro" in dockerfile
    docs = (REPO / "docs" / "serving.md").read_text()
    assert ":/run/secrets/arena_api_keys:ro" in docs
