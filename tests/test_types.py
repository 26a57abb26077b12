"""Contract: the label sets are exactly those of DESIGN §2."""

from __future__ import annotations

from assist.types import Emotion, Intent, SentimentLabel

DESIGN_INTENTS = {
    "presale_product", "price_promotion", "logistics", "order_change", "return_exchange", "refund",
    "usage_howto", "product_defect", "repair_warranty", "invoice", "complaint", "account_membership",
    "greeting_thanks", "other",
}


def test_intent_labels_match_design() -> None:
    assert {i.value for i in Intent} == DESIGN_INTENTS


def test_sentiment_and_emotion_labels_match_design() -> None:
    assert {s.value for s in SentimentLabel} == {"negative", "neutral", "positive"}
    assert {e.value for e in Emotion} == {"anger", "anxiety", "disappointment", "satisfaction", "none"}
