"""Contract: every AssistError class has a row in the one error table, and both transports use it."""

from __future__ import annotations

import pytest

import assist.service.errors as service_errors
from assist import errors as e
from assist.errors import all_error_classes
from assist.service.errors import ERROR_TABLE, error_body, http_status
from assist.service.frames import ErrorFrame


def test_every_assist_error_is_mapped() -> None:
    classes = all_error_classes()
    assert service_errors.Unauthorized in classes  # the service's own classes are AssistErrors too
    missing = [c.__name__ for c in classes if c not in ERROR_TABLE]
    assert not missing, f"add these to service/errors.py ERROR_TABLE: {missing}"


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.code)
def test_http_status_and_body(cls: type[e.AssistError]) -> None:
    exc = cls.__new__(cls)
    e.AssistError.__init__(exc, "boom")
    status = http_status(exc)
    assert 400 <= status < 600
    body = error_body(exc)
    assert body == {"code": cls.code, "message": "boom"}
    frame = ErrorFrame(code=exc.code, message=exc.message)
    assert frame.model_dump(mode="json")["code"] == cls.code


def test_expected_statuses() -> None:
    assert http_status(e.KbEntryNotFound("x")) == 404
    assert http_status(e.KbEntryExists("x")) == 409
    assert http_status(e.TextTooLongError("x")) == 422
    assert http_status(e.NotReadyError("x")) == 503
    assert http_status(service_errors.Unauthorized("x")) == 401
    assert http_status(e.AssistError("x")) == 500
