"""``explain`` in ``POST /v1/predict``: concepts, sides, weights and sentences.

The application runs in this process (Starlette's test client, lifespan
included) on a small saved anchored model; the answers are compared with the
same model directory loaded here.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from features.battles import as_battles
from models import PreferenceModel
from models.explain import CONCEPTS
from pipelines.make_demo_data import make_demo_battles

pytest.importorskip("httpx")
pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from pipelines.serving.app import ServeSettings, create_app, load_model  # noqa: E402

KEYS = ["concept", "toward", "weight", "sentence"]
BATTLES = [
    {
        "id": "b-longer",
        "prompt": "What is 2+2?",
        "response_a": "4",
        "response_b": ["It is 4, since two plus two is four; add 2 and 2 to get 4."],
    },
    {
        "id": "a-refuses",
        "prompt": "Name a fruit.",
        "response_a": "I'm sorry, but I can't help with that.",
        "response_b": "An apple.",
    },
    {
        "id": "plain",
        "prompt": "Say hi",
        "response_a": "Hi there!",
        "response_b": "Hello!",
    },
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = PreferenceModel(
        blocks={"lengths": {}, "flags": {}},
        booster_params={
            "lightgbm": {
                "num_boost_round": 30,
                "learning_rate": 0.2,
                "num_leaves": 7,
                "num_threads": 1,
            }
        },
        n_folds=2,
        anchor=True,
    ).fit(make_demo_battles(n_rows=300, seed=3))
    return model.save(tmp_path_factory.mktemp("serve-explain") / "model")


@pytest.fixture(scope="module")
def client(model_dir):
    app = create_app(ServeSettings(str(model_dir)), load_model(model_dir))
    with TestClient(app) as http:
        yield http


def test_explanation_is_a_list_of_the_four_keys(client, model_dir):
    response = client.post("/v1/predict", json={"battles": BATTLES, "explain": 3})
    assert response.status_code == 200, response.text
    expected = PreferenceModel.load(model_dir).explain(as_battles(BATTLES), top=3)
    for prediction in response.json()["predictions"]:
        rows = expected[expected["id"] == prediction["id"]]
        explanation = prediction["explanation"]
        assert [sorted(item) for item in explanation] == [sorted(KEYS)] * len(rows)
        assert [item["concept"] for item in explanation] == rows["concept"].tolist()
        assert [item["toward"] for item in explanation] == rows["toward"].tolist()
        assert [item["sentence"] for item in explanation] == rows["sentence"].tolist()
        np.testing.assert_allclose(
            [item["weight"] for item in explanation], rows["weight"], atol=1e-9
        )


def test_explanations_name_the_clear_cause(client):
    response = client.post("/v1/predict", json={"battles": BATTLES, "explain": 1})
    first = {p["id"]: p["explanation"][0] for p in response.json()["predictions"]}
    assert first["b-longer"]["concept"] == "length"
    assert first["b-longer"]["toward"] == "B"
    assert re.match(r"B is \d+\.\d× longer", first["b-longer"]["sentence"])
    assert first["a-refuses"]["concept"] == "refusal or empty answer"
    assert first["a-refuses"]["toward"] == "B"
    assert first["a-refuses"]["sentence"] == "A refuses"


def test_no_explanation_without_explain(client):
    response = client.post("/v1/predict", json={"battles": BATTLES})
    assert all("explanation" not in p for p in response.json()["predictions"])


@pytest.mark.parametrize(
    ("explain", "message"),
    [
        (0, "explain must be a positive integer k"),
        (len(CONCEPTS) + 1, f"explanations have at most {len(CONCEPTS)}"),
    ],
)
def test_bad_explain_gets_a_422_naming_the_field(client, explain, message):
    response = client.post("/v1/predict", json={"battles": BATTLES, "explain": explain})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "explain"
    assert message in error["message"]


def test_openapi_describes_the_explanation_items(client):
    schema = client.get("/openapi.json").json()
    text = json.dumps(schema)
    assert '"toward"' in text and '"sentence"' in text
    body = schema["components"]["schemas"]["PredictRequest"]
    assert body["properties"]["explain"]["maximum"] == len(CONCEPTS)
