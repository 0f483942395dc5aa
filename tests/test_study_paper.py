"""study.paper: cited values and plot statements; every malformed entry is one line naming the key."""

from __future__ import annotations

import pytest

from longcot.study.paper import Check, parse_paper

POINTS = ["a", "b"]


def test_parse_values_and_findings():
    p = parse_paper({"source": "T1", "values": {"a": {"math500": 54, "avg": 27.9}},
                     "findings": [{"cite": "Fig. 1", "statement": "s", "checks": [
                         {"point": "a", "minus": "b", "benchmark": "math500", "about": 3, "tol": 2},
                         {"point": "b", "rl_metric": "accuracy", "of": "change", "below": 0}]}]}, POINTS)
    assert p.value("a", "math500") == 54.0 and p.value("a", "aime24") is None and p.value("b", "math500") is None
    about, trend = p.findings[0].checks
    assert about.holds(4.9) and about.holds(1.0) and not about.holds(5.1)
    assert trend.holds(-0.1) and not trend.holds(0.0)
    assert Check("a", "above", 70).holds(70.1) and not Check("a", "above", 70).holds(70)
    assert not parse_paper(None, POINTS) and not parse_paper({}, POINTS)


@pytest.mark.parametrize("raw,message", [
    ({"values": {"a": {"math500": 1}}}, "study.paper.source: say where the numbers come from"),
    ({"source": "s", "values": {"c": {"x": 1}}}, "study.paper.values.c: not a point of the study; valid: a, b"),
    ({"source": "s", "values": {"a": {"x": None}}}, "study.paper.values.a.x: must be a number"),
    ({"rows": []}, "study.paper.rows: unknown key; valid: source, values, findings"),
    ({"findings": [{"cite": "F", "statement": "s"}]}, r"study.paper.findings\[0\]: needs cite, statement and a list of checks"),
    ({"findings": [{"cite": "F", "statement": "s", "checks": [{"point": "a", "benchmark": "m", "about": 1}]}]},
     r"findings\[0\].checks\[0\].tol: 'about' needs a tolerance"),
    ({"findings": [{"cite": "F", "statement": "s", "checks": [{"point": "a", "benchmark": "m", "above": 1, "below": 2}]}]},
     "give exactly one of above, below, about"),
    ({"findings": [{"cite": "F", "statement": "s", "checks": [{"point": "z", "benchmark": "m", "above": 1}]}]},
     r"checks\[0\].point='z': not a point of the study"),
    ({"findings": [{"cite": "F", "statement": "s", "checks": [{"point": "a", "above": 1}]}]}, r"checks\[0\].benchmark: missing"),
    ({"findings": [{"cite": "F", "statement": "s", "checks": [{"point": "a", "rl_metric": "x", "of": "first", "above": 1}]}]},
     r"checks\[0\].of='first': unknown; valid: last, change"),
])
def test_errors_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_paper(raw, POINTS)
