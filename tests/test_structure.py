"""The layout's promises: every catalogued rule has code, no rule reports an unknown id."""

from __future__ import annotations

import pytest

from bindimg.commands import lint  # noqa: F401  (the runner imports every rule, as a run does)
from bindimg.findings import RULES
from bindimg.rules import REPORTED_BY, unit_rule


def test_every_catalogued_rule_is_reported_by_a_registered_function() -> None:
    assert sorted(REPORTED_BY) == sorted(RULES)


def test_a_rule_with_an_uncatalogued_id_is_refused_at_registration() -> None:
    with pytest.raises(ValueError) as refused:
        unit_rule("no-such-rule")(lambda u, ctx: [])
    assert str(refused.value) == "<lambda> reports 'no-such-rule', which is not in findings.RULES"
