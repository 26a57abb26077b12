from __future__ import annotations

from assist.errors import AssistError, DataFileError, RecordProblem, all_error_classes


def test_codes_are_unique_and_dotted_or_plain() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes)), codes
    assert all(c and c == c.lower() and " " not in c for c in codes)


def test_data_file_error_lists_every_problem() -> None:
    problems = [RecordProblem("kb.jsonl", i, "answer", "empty") for i in range(1, 61)]
    exc = DataFileError(problems)
    assert isinstance(exc, AssistError)
    assert "kb.jsonl:1: answer: empty" in exc.message
    assert "and 10 more" in exc.message
    assert len(exc.details) == 60  # type: ignore[arg-type]
