//! The OpenAPI 3 description of the routes in `api.rs`; a test checks the two agree.

use serde_json::{json, Value};

pub fn document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let err = |description: &str| json!({"description": description, "content": {"application/json": {"schema": error}}});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "epitome",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Empathy in text-based mental health support: levels (0 none, 1 weak, 2 strong) and rationales of Emotional Reactions (ER), Interpretations (IP) and Explorations (EX), after Sharma et al., EMNLP 2020."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Pair": {
                    "type": "object",
                    "required": ["seeker_post", "response_post"],
                    "properties": {
                        "id": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                        "seeker_post": {"type": "string"},
                        "response_post": {"type": "string", "minLength": 1}
                    }
                },
                "Batch": {
                    "type": "object",
                    "required": ["pairs"],
                    "properties": {"pairs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Pair"}}}
                },
                "Rationale": {
                    "type": "object",
                    "required": ["start", "end", "text"],
                    "properties": {
                        "start": {"type": "integer", "description": "offset in Unicode scalar values into response_post"},
                        "end": {"type": "integer"},
                        "text": {"type": "string"}
                    }
                },
                "Mechanism": {
                    "type": "object",
                    "required": ["level", "probs", "rationales"],
                    "properties": {
                        "level": {"type": "integer", "enum": [0, 1, 2]},
                        "probs": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                        "rationales": {"type": "array", "items": {"$ref": "#/components/schemas/Rationale"}}
                    }
                },
                "Prediction": {
                    "type": "object",
                    "required": ["id", "ER", "IP", "EX", "truncated"],
                    "properties": {
                        "id": {"type": "string"},
                        "ER": {"$ref": "#/components/schemas/Mechanism"},
                        "IP": {"$ref": "#/components/schemas/Mechanism"},
                        "EX": {"$ref": "#/components/schemas/Mechanism"},
                        "truncated": {"type": "boolean", "description": "a post was cut at the model's maximum length"}
                    }
                },
                "Predictions": {
                    "type": "object",
                    "required": ["predictions"],
                    "properties": {"predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}}
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "type"],
                    "properties": {"error": {"type": "string"}, "type": {"type": "string"}}
                }
            }
        },
        "paths": {
            "/v1/score": {"post": {
                "summary": "Score one pair, or a batch of pairs",
                "security": [{"bearer": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Pair"}, {"$ref": "#/components/schemas/Batch"}]}}}},
                "responses": {
                    "200": {"description": "A Prediction for a single pair, Predictions for a batch", "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Prediction"}, {"$ref": "#/components/schemas/Predictions"}]}}}},
                    "400": err("The body is not UTF-8 or not JSON"),
                    "401": err("Missing or wrong bearer token"),
                    "413": err("Body, text or pair count over its limit"),
                    "422": err("Missing fields, wrong types, empty response"),
                    "429": err("The queue is full")
                }
            }},
            "/info": {"get": {"summary": "Facts of the loaded model bundle", "security": [{"bearer": []}],
                "responses": {"200": {"description": "Model facts", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": err("Missing or wrong bearer token")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{"bearer": []}],
                "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": err("Missing or wrong bearer token")}}},
            "/healthz": {"get": {"summary": "The process is up", "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/readyz": {"get": {"summary": "The model is loaded", "responses": {"200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object"}}}}, "503": err("Not ready")}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/": {"get": {"summary": "The feedback page for peer supporters", "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}}
        }
    })
}
