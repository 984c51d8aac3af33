"""The service's OpenAPI 3.1 description and its interactive docs page."""

from __future__ import annotations

from typing import Any

from features.battles import CLASSES
from models.explain import CONCEPTS

__all__ = ["DOCS_HTML", "openapi_schema"]

_TEXT = {
    "description": "A string (one turn), a list of turn strings, or the Kaggle "
    'JSON-list string such as \'["turn 1", "turn 2"]\'. Null turns, numbers and '
    "invalid JSON are repaired and reported as by the command-line tools.",
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": ["string", "null"]}},
        {"type": "null"},
    ],
}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"], "example": "battles[3].prompt"},
                "battle_index": {"type": ["integer", "null"]},
            },
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def openapi_schema(*, max_batch: int, max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI document served at ``/openapi.json``.

    >>> openapi_schema(max_batch=10, max_body_bytes=1000)["openapi"]
    '3.1.0'
    """
    probabilities = {
        name: {"type": "number", "minimum": 0, "maximum": 1} for name in CLASSES
    }
    prediction = {
        "type": "object",
        "required": ["id", *CLASSES],
        "properties": {
            "id": {"type": "string"},
            **probabilities,
            "explanation": {
                "type": "array",
                "description": "Only with `explain`: the k concepts that weigh "
                "most in the model's A-versus-B score, strongest first "
                "(docs/explanations.md). The weights of all concepts add up to "
                "that score.",
                "example": [
                    {
                        "concept": "length",
                        "toward": "B",
                        "weight": -1.31,
                        "sentence": "B is 21.0× longer (21 vs 1 characters)",
                    },
                    {
                        "concept": "similarity",
                        "toward": "B",
                        "weight": -0.14,
                        "sentence": "the answers share 20% of their words; A "
                        "repeats 0% of the prompt's words, B 67%",
                    },
                ],
                "items": {
                    "type": "object",
                    "required": ["concept", "toward", "weight", "sentence"],
                    "properties": {
                        "concept": {"type": "string", "enum": list(CONCEPTS)},
                        "toward": {"type": "string", "enum": ["A", "B"]},
                        "weight": {
                            "type": "number",
                            "description": "Share of the raw A-minus-B score "
                            "(log-odds units): > 0 toward A, < 0 toward B.",
                        },
                        "sentence": {
                            "type": "string",
                            "description": "The concept in this battle, in "
                            "plain words.",
                        },
                    },
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "arena-preference",
            "version": "1",
            "description": "Which of two chatbot responses a person prefers: "
            "calibrated P(A wins), P(B wins), P(tie).",
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "summary": "Predict battles",
                    "description": f"At most {max_batch:,} battles and "
                    f"{max_body_bytes:,} bytes per request. Predictions come back in "
                    "input order; concurrent requests share model calls "
                    "(micro-batching) without changing the numbers.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "$ref": "#/components/schemas/PredictRequest"
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            "Predictions",
                            {"$ref": "#/components/schemas/PredictResponse"},
                        ),
                        "400": _error("The body is not JSON"),
                        "413": _error("Body over the size limit, or too many battles"),
                        "422": _error("A field is missing or has the wrong type"),
                        "503": _error("Not ready (starting or shutting down)"),
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "The served model",
                    "responses": {
                        "200": _json(
                            "Profile, blocks, boosters, training metrics, format "
                            "version and manifest sha256",
                            {"type": "object"},
                        )
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": _json("Alive", {"type": "object"})},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the model is loaded and verified",
                    "responses": {
                        "200": _json("Ready", {"type": "object"}),
                        "503": _error("Not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of this worker process",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Battle": {
                    "type": "object",
                    "required": ["id", "prompt", "response_a", "response_b"],
                    "properties": {
                        "id": {"type": ["string", "integer"]},
                        "prompt": _TEXT,
                        "response_a": _TEXT,
                        "response_b": _TEXT,
                    },
                },
                "PredictRequest": {
                    "type": "object",
                    "required": ["battles"],
                    "additionalProperties": False,
                    "properties": {
                        "battles": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_batch,
                            "items": {"$ref": "#/components/schemas/Battle"},
                        },
                        "class_prior": {
                            "type": "array",
                            "description": "Shift predictions to this class prior "
                            "(A, B, tie); 3 positive numbers.",
                            "items": {"type": "number", "exclusiveMinimum": 0},
                            "minItems": 3,
                            "maxItems": 3,
                        },
                        "explain": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": len(CONCEPTS),
                            "description": "Return the k strongest concepts "
                            "(length, markdown style, refusal, ...) per battle.",
                        },
                    },
                    "example": {
                        "battles": [
                            {
                                "id": "1",
                                "prompt": "What is 2+2?",
                                "response_a": "4",
                                "response_b": ["It is 4, since 2+2=4."],
                            }
                        ],
                        "explain": 2,
                    },
                },
                "PredictResponse": {
                    "type": "object",
                    "required": ["model", "predictions", "repairs"],
                    "properties": {
                        "model": {
                            "type": "string",
                            "description": "sha256 of the model's manifest",
                        },
                        "predictions": {"type": "array", "items": prediction},
                        "repairs": {
                            "type": "object",
                            "description": "What was repaired in the battles "
                            "(n_rows, n_repairs, counts and example ids per kind).",
                        },
                    },
                },
                "Error": _ERROR,
            }
        },
    }


DOCS_HTML = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>arena-preference API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
<noscript>The machine-readable description is at
<a href="/openapi.json">/openapi.json</a>.</noscript>
</body>
</html>
"""
"""Swagger UI over ``/openapi.json`` (the browser loads the UI's files)."""
