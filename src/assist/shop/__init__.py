"""Shop data (DESIGN §3): KB entries, catalog, cross-sell relations, policy; models and loaders."""

from __future__ import annotations

from assist.shop.load import Shop, load_catalog, load_cross_sell, load_kb, load_shop, validate_shop
from assist.shop.models import CatalogItem, CrossSellRelation, KbEntry, KbStatus

__all__ = [
    "CatalogItem",
    "CrossSellRelation",
    "KbEntry",
    "KbStatus",
    "Shop",
    "load_catalog",
    "load_cross_sell",
    "load_kb",
    "load_shop",
    "validate_shop",
]
