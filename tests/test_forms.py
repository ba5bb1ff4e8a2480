"""edge's form parser against the real qs: every body in tests/fixtures/qs_forms.json, parsed by
body-parser 1.20.4's urlencoded({extended: true}) over qs 6.14.1 under node (see its
"generated_by" and tests/fixtures/qs_forms_gen.js, which is not run here: no node on CI), must
give what Motia 0.x's handler got, key order included, or the same refusal (413, 400).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.server.bodies import BadBody
from edge.server.forms import FORM, parse_form

FIXTURE = Path(__file__).parent / "fixtures" / "qs_forms.json"
DATA = json.loads(FIXTURE.read_text(encoding="utf-8"))
CASES = DATA["cases"]
HEADER = FORM  # the Content-Type app.py hands parse_form: no charset, so UTF-8, as body-parser took it

#: body-parser's error types and the status edge answers them with (forms.py: FORM_PARAMETERS, FORM_DEPTH)
ERRORS = {"parameters.too.many": 413, "querystring.parse.rangeError": 400}

def _raw(case: dict) -> bytes:
    return case["body"].encode("utf-8") if "body" in case else bytes.fromhex(case["body_hex"])


def _expected(case: dict) -> str:
    if "error" in case:
        return json.dumps({"status": ERRORS[case["error"]["type"]]})
    return json.dumps({"body": case["qs"]}, ensure_ascii=False)


def _edge(case: dict) -> str:
    try:
        return json.dumps({"body": parse_form(_raw(case), HEADER)}, ensure_ascii=False)
    except BadBody as exc:
        return json.dumps({"status": exc.response[0]})


def _difference(case: dict) -> str | None:
    want, got = _expected(case), _edge(case)
    if want == got:
        return None
    body = case["body"] if "body" in case else f"bytes {case['body_hex']}"
    return f"{case['name']!r}: {body[:300]!r}\n  qs:   {want[:600]}\n  edge: {got[:600]}"


def test_the_fixture_is_qs_6_14_under_body_parser_1_20_4():
    assert "qs 6.14.1" in DATA["generated_by"] and "body-parser 1.20.4" in DATA["generated_by"]
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names)) and len(names) >= 300
    assert sum(name.startswith("random ") for name in names) >= 200
    # both refusals are in it, with body-parser's own words
    errors = {(c["error"]["status"], c["error"]["type"]) for c in CASES if "error" in c}
    assert errors == {(413, "parameters.too.many"), (400, "querystring.parse.rangeError")}
    assert all(ERRORS[c["error"]["type"]] == c["error"]["status"] for c in CASES if "error" in c)
    assert FIXTURE.stat().st_size < 220_000


def test_edge_parses_every_fixture_as_qs_did():
    differences = [d for case in CASES for d in [_difference(case)] if d]
    assert not differences, f"{len(differences)} of {len(CASES)} forms differ from qs; the first:\n{differences[0]}"


def test_edge_refuses_what_body_parser_refused():
    refused = [case for case in CASES if "error" in case]
    assert len(refused) >= 5
    for case in refused:
        with pytest.raises(BadBody) as caught:
            parse_form(_raw(case), HEADER)
        status, _, body = caught.value.response
        assert status == case["error"]["status"], case["name"]
        if status == 400:
            assert json.loads(body)["error"] == "Malformed form body", case["name"]
