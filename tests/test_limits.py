"""The shared input limits and value types (assist.limits)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from assist import limits
from assist.limits import Id, Note, Seq, Timestamp


class _Model(BaseModel):
    plain: limits.SafeStr | None = None
    id: Id | None = None
    note: Note | None = None
    ts: Timestamp | None = None
    seq: Seq = 0


@pytest.mark.parametrize("field", [{"plain": "a\ud800"}, {"id": "a\ud800"}, {"note": "改\udfff了"}])
def test_lone_surrogates_are_refused(field: dict[str, str]) -> None:
    with pytest.raises(PydanticValidationError):  # pydantic itself or no_surrogates, by the field's constraints
        _Model(**field)
    assert limits.is_unicode("正常的文字😀") and not limits.is_unicode("\ud83d")


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:30:00+01:00",
                                "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2099-12-31T23:00:00-02:00",
                                10**11, -1])
def test_dates_outside_2000_to_2100_are_refused_without_overflow(ts: object) -> None:
    with pytest.raises(PydanticValidationError):
        _Model(ts=ts)


@pytest.mark.parametrize("ts", ["2000-01-01T00:00:00Z", "2099-12-31T23:59:59Z", "2024-11-20T10:00:00",
                                "2000-01-01T08:00:00+08:00"])
def test_dates_in_range_are_kept(ts: str) -> None:
    assert _Model(ts=ts).ts is not None


def test_seq_and_lengths_are_bounded() -> None:
    assert _Model(seq=limits.SEQ_MAX).seq == limits.SEQ_MAX
    for bad in ({"seq": limits.SEQ_MAX + 1}, {"seq": -1}, {"id": "x" * (limits.ID_MAX + 1)},
                {"note": "x" * (limits.NOTE_MAX + 1)}, {"id": "a b"}):
        with pytest.raises(PydanticValidationError):
            _Model(**bad)


@pytest.mark.parametrize("raw", ['{"a": NaN}', "[Infinity]", "-Infinity", "[" * 100_000 + "]" * 100_000])
def test_loads_json_refuses_non_json_numbers_and_deep_nesting_with_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        limits.loads_json(raw)
    assert limits.loads_json('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
