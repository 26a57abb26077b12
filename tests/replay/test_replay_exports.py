"""The replay package's public names are exactly its ``__all__`` (httpx's test_exported_members)."""

from __future__ import annotations

import assist.replay


def test_all_is_honest() -> None:
    exported = set(assist.replay.__all__)
    assert exported == {"FORMAT_VERSION", "ParsedLogs", "Replayer", "build_report", "evaluate", "parse_logs",
                        "read_logs", "render_html", "write_report"}
    for name in exported:
        assert hasattr(assist.replay, name), name


def test_router_name_for_the_app() -> None:
    from assist.service.rest.replay import router

    assert router.prefix == "/v1/replay"
    assert {r.path for r in router.routes} >= {"/v1/replay", "/v1/replay/{replay_id}", "/v1/replay/{replay_id}/events"}
