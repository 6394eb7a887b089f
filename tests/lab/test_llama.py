"""A real llama-server (built from the llama-cpp-python sdist) serves a generated model in a guest."""

from __future__ import annotations

import json

from . import guestops


def test_llama_server_runs_in_the_guest_without_missing_libraries(lab4_llama: dict) -> None:
    r = lab4_llama["conn"].run(["ldd", guestops.LLAMA_SERVER])
    assert r.ok and "not found" not in r.stdout, r.stdout


def test_llama_server_answers_health_and_completion(lab4_llama: dict) -> None:
    conn = lab4_llama["conn"]
    guestops.start_llama(conn)
    try:
        status, body = guestops.http(conn, "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = guestops.http(conn, "/completion", {"prompt": "Hello", "n_predict": 8, "ignore_eos": True,
                                                           "temperature": 0})
        assert status == 200, body
        out = json.loads(body)
        assert isinstance(out["content"], str)
        assert out["tokens_predicted"] == 8
        assert out["tokens_evaluated"] >= 2  # <s> and at least one byte token of "Hello"
    finally:
        guestops.stop_llama(conn)
