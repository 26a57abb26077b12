"""Which defect reports count (assist.insights.defects): pure, on hand-built states."""

from __future__ import annotations

from datetime import UTC, datetime

from assist.insights.defects import UNMATCHED, reports_of_turn, solved_as_usage, symptom_key
from assist.policy.actions import Action, ActionType
from assist.state import ConversationState, Problem
from assist.types import Intent

T0 = datetime(2026, 11, 1, tzinfo=UTC)
REMEDIES = {"refund", "return_exchange", "repair_warranty"}


def _problem(**kw: object) -> Problem:
    base: dict[str, object] = dict(id="t1", text="声音太小", family="product", intent=Intent.usage_howto,
                                   intents=[Intent.usage_howto, Intent.product_defect],
                                   kb_ids=["sj-earbuds-volume-low"], answered=True)
    return Problem(**{**base, **kw})  # type: ignore[arg-type]


def _state(p: Problem | None) -> ConversationState:
    return ConversationState(conversation_id="c1", problem=p)


def _report(**details: object) -> Action:
    return Action(id="t3:quality_report:0", type=ActionType.quality_report, rule="defect.failed_guidance",
                  sku="SJ-EP-001", details={"kind": "failed_guidance", "sku": "SJ-EP-001", "batch": "B2411",
                                            "region": "浙江杭州", "symptom": "声音太小 / 还是很小声", **details})


def test_a_report_is_recorded_with_its_tags_and_the_problem_as_its_identity() -> None:
    after = _state(_problem(defect=True, defect_reported=True))
    answer = Action(id="t3:answer:0", type=ActionType.answer, kb_id="x")
    [r] = reports_of_turn("c1", "t3", T0, after, [answer, _report()])
    assert (r.problem_id, r.sku, r.batch, r.region, r.symptom) == (
        "t1", "SJ-EP-001", "B2411", "浙江杭州", "kb:sj-earbuds-volume-low")
    assert r.kind == "failed_guidance" and r.at == T0 and r.symptom_text.endswith("还是很小声")


def test_symptom_falls_back_to_the_reports_entry_then_unmatched() -> None:
    assert symptom_key(_problem(kb_ids=[]), _report(kb_ids=["kb-b"])) == "kb:kb-b"
    bare = Action(id="a", type=ActionType.quality_report, kb_id="kb-c")
    assert symptom_key(None, bare) == "kb:kb-c"
    assert symptom_key(None, Action(id="a", type=ActionType.quality_report)) == UNMATCHED


def test_solved_by_the_customer_after_the_report_is_a_usage_problem() -> None:
    before = _state(_problem(defect=True, defect_reported=True))
    after = _state(_problem(defect=True, defect_reported=True, resolved=True, resolved_by="customer"))
    assert solved_as_usage(before, after, "greeting_thanks", REMEDIES) == "t1"


def test_a_remedy_asked_for_or_an_agent_resolve_keeps_the_defect() -> None:
    before = _state(_problem(defect=True, defect_reported=True))
    solved = dict(defect=True, defect_reported=True, resolved=True, resolved_by="customer")
    # "好的 那就换新吧 谢谢": the remedy settled it, the product was faulty
    assert solved_as_usage(before, _state(_problem(**solved)), "return_exchange", REMEDIES) is None
    asked = _problem(**solved, intents=[Intent.product_defect, Intent.return_exchange])
    assert solved_as_usage(before, _state(asked), "greeting_thanks", REMEDIES) is None
    by_agent = _problem(**{**solved, "resolved_by": "agent"})
    assert solved_as_usage(before, _state(by_agent), None, REMEDIES) is None


def test_no_report_or_another_problem_is_not_a_retraction() -> None:
    solved = _state(_problem(resolved=True, resolved_by="customer"))
    assert solved_as_usage(_state(_problem()), solved, "greeting_thanks", REMEDIES) is None
    other = _state(_problem(id="t9", defect=True, defect_reported=True, resolved=True, resolved_by="customer"))
    assert solved_as_usage(_state(_problem(defect_reported=True)), other, None, REMEDIES) is None
