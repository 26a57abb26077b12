from __future__ import annotations

import pytest

from assist.understanding.normalise import normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＸＴ２０ 显示Ｅ１！！！", "xt20 显示e1!"),
        ("請問這個退貨要怎麼處理", "请问这个退货要怎么处理"),
        ("什么时候发货？？？？", "什么时候发货?"),
        ("啊啊啊啊啊啊 气死了😡😡", "啊啊啊 气死了[生气][生气]"),
        ("  好的\n\n谢谢  ", "好的 谢谢"),
        ("🎁🎉收到了", "收到了"),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def test_idempotent() -> None:
    for s in ["請問ＸＴ２０？？😭", "hello World！！", "宝宝屁股红红的用什么好"]:
        assert normalise(normalise(s)) == normalise(s)
