// The assist panel: understanding of the last customer turn, ranked action cards, KB search.
//
// Every card is <article class="card" data-action-type="<type>" data-action-id="<id>"> and holds
// the card's text, so tests and embedders can find cards without knowing the layout.

import { api } from "./connection.js";
import { h, pct } from "./dom.js";
import { ACTION, EMOTION, INTENT, SENTIMENT, STAGE, STATUS, TIER } from "./labels.js";

export class Panel {
  /**
   * @param root      element to render into
   * @param conversation  the Conversation store
   * @param readonly  listen-in: no use / dismiss
   * @param onUse     (card) => void: put the card's script where the agent writes
   * @param onDismiss (card) => void: the agent dismissed a card
   */
  constructor(root, { conversation, readonly = false, onUse, onDismiss }) {
    this.root = root;
    this.conversation = conversation;
    this.readonly = readonly;
    this.onUse = onUse;
    this.onDismiss = onDismiss;
    this._cardsKey = null;
    this.summary = h("section", { class: "summary", "aria-label": "顾客理解" });
    this.cards = h("div", { class: "cards", role: "list", id: "cards" });
    this.cardsCount = h("small", { class: "count" });
    this.kbInput = h("input", { type: "search", id: "kb-q", placeholder: "搜索知识库（Ctrl+K）", "aria-label": "搜索知识库" });
    this.kbResults = h("ol", { class: "kb-results", id: "kb-results" });
    this._kbTimer = null;
    this._kbQuery = "";
    root.append(
      this.summary,
      h("section", { class: "suggestions", "aria-label": "建议" },
        h("h2", {}, "建议 ", this.cardsCount, h("span", { class: "hint" }, readonly ? "旁听模式" : "Tab 浏览 · Enter 使用 · Del 忽略")),
        this.cards),
      h("section", { class: "kb", "aria-label": "知识库" },
        h("h2", {}, "知识库"),
        h("form", { class: "kb-form", onsubmit: (e) => { e.preventDefault(); this.search(this.kbInput.value, true); } },
          this.kbInput),
        this.kbResults),
    );
    this.kbInput.addEventListener("input", () => {
      clearTimeout(this._kbTimer);
      this._kbTimer = setTimeout(() => this.search(this.kbInput.value), 300);
    });
    this.cards.addEventListener("keydown", (e) => this._cardKey(e));
    conversation.addEventListener("change", () => this.render());
    this.render();
  }

  render() {
    const view = this.conversation.view();
    this._renderSummary(view);
    const key = view.cards.map((c) => `${c.id}:${c.status}`).join("|");
    if (key !== this._cardsKey) {
      this._cardsKey = key;
      this._renderCards(view.cards);
    }
  }

  /** The card the top-card shortcut uses (first one not used yet). */
  topCard(n = 0) {
    const open = this.conversation.view().cards.filter((c) => c.status === "shown");
    return open[n] || null;
  }

  _renderSummary({ lastCustomer, state }) {
    const intent = lastCustomer?.intent;
    const senti = lastCustomer?.sentiment;
    const problem = state?.problem;
    const customer = state?.customer;
    const rows = [
      h("div", { class: "cell" }, h("span", { class: "k" }, "意图"),
        intent ? h("span", { class: "v", id: "intent", dataset: { label: intent.label } },
          INTENT[intent.label] || intent.label, h("small", {}, pct(intent.confidence)))
          : h("span", { class: "v muted" }, "—")),
      h("div", { class: "cell" }, h("span", { class: "k" }, "情绪"),
        senti ? h("span", { class: `v senti ${senti.label}`, id: "sentiment", dataset: { label: senti.label } },
          SENTIMENT[senti.label] || senti.label,
          EMOTION[senti.emotion] ? ` · ${EMOTION[senti.emotion]}` : "",
          h("small", {}, senti.score.toFixed(2)))
          : h("span", { class: "v muted" }, "—")),
      h("div", { class: "cell wide" }, h("span", { class: "k" }, "趋势"), trend(state?.sentiment_trend || [])),
      h("div", { class: "cell wide" }, h("span", { class: "k" }, "问题"),
        problem
          ? h("span", { class: "v problem" }, h("q", {}, problem.text || "—"),
            h("span", { class: `stage ${state.stage}`, id: "stage", dataset: { stage: state.stage } }, STAGE[state.stage] || state.stage),
            problem.escalated ? h("span", { class: "flag red" }, "已升级") : null,
            problem.defect ? h("span", { class: "flag amber" }, "质量问题") : null)
          : h("span", { class: "v muted" }, state ? STAGE[state.stage] || state.stage : "等待顾客消息")),
    ];
    if (customer) {
      const orders = (customer.orders || []).length;
      rows.push(h("div", { class: "cell wide" }, h("span", { class: "k" }, "顾客"),
        h("span", { class: "v" }, customer.id, h("small", {}, TIER[customer.tier] || customer.tier),
          orders ? h("small", {}, `${orders} 个订单`) : null,
          customer.opt_out_marketing ? h("small", {}, "不接受营销") : null)));
    }
    this.summary.replaceChildren(...rows);
  }

  _renderCards(cards) {
    const focused = document.activeElement?.closest?.(".card");
    const focusId = focused?.dataset.actionId;
    const focusDo = document.activeElement?.dataset?.do;
    this.cardsCount.textContent = cards.length ? String(cards.length) : "";
    if (!cards.length) {
      this.cards.replaceChildren(h("p", { class: "empty" }, "暂无建议。顾客发消息后，这里会给出解答、澄清、升级、补偿、关怀或推荐。"));
      return;
    }
    let open = 0;
    this.cards.replaceChildren(...cards.map((c) => this._card(c, c.status === "shown" ? ++open : 0)));
    if (focusId) {
      const el = this.cards.querySelector(`[data-action-id="${CSS.escape(focusId)}"]`);
      (el?.querySelector(`[data-do="${focusDo}"]`) || el)?.focus();
    }
  }

  _card(c, n) {
    const used = c.status !== "shown";
    const buttons = this.readonly || used ? [] : [
      c.script ? h("button", { type: "button", class: "use", "data-do": "use", tabindex: -1, onclick: () => this.onUse(c) },
        "使用", n && n < 10 ? h("kbd", {}, `Alt+${n}`) : null) : null,
      h("button", { type: "button", class: "dismiss", "data-do": "dismiss", tabindex: -1, onclick: () => this.onDismiss(c) }, "忽略"),
    ];
    return h("article", {
      class: `card ${c.type}${used ? " used" : ""}`, role: "listitem", tabindex: 0,
      dataset: { actionType: c.type, actionId: c.id, status: c.status },
      "aria-label": `${ACTION[c.type] || c.type}：${c.reason}`,
    },
    h("header", {},
      h("span", { class: `badge ${c.type}` }, ACTION[c.type] || c.type),
      h("span", { class: "reason" }, c.reason),
      used ? h("span", { class: "status" }, STATUS[c.status] || c.status) : null),
    c.script ? h("p", { class: "script" }, c.script) : null,
    // Tab goes from card to card (one stop each): Enter uses it, Delete dismisses it, so the
    // buttons and the KB link inside are for the mouse only.
    h("footer", {}, h("span", { class: "meta" }, ...meta(c, -1)), ...buttons));
  }

  _cardKey(e) {
    const card = e.target.closest?.(".card");
    if (!card || e.target !== card || this.readonly) return;
    const c = this.conversation.view().cards.find((x) => x.id === card.dataset.actionId);
    if (!c) return;
    if (e.key === "Enter" && c.script && c.status === "shown") {
      e.preventDefault();
      this.onUse(c);
    } else if ((e.key === "Delete" || e.key === "Backspace") && c.status === "shown") {
      e.preventDefault();
      const next = card.nextElementSibling || card.previousElementSibling;
      this.onDismiss(c);
      next?.focus?.();
    }
  }

  async search(q, now = false) {
    q = q.trim();
    if (!q) {
      this.kbResults.replaceChildren();
      return;
    }
    if (q === this._kbQuery && !now) return;
    this._kbQuery = q;
    try {
      const res = await api(`/v1/kb/search?q=${encodeURIComponent(q)}`);
      if (q !== this._kbQuery) return;
      const hits = res.hits.filter((x) => x.score >= 0.01).slice(0, 5);
      this.kbResults.replaceChildren(...(hits.length ? hits.map((x) => this._hit(x))
        : [h("li", { class: "empty" }, "没有找到相关条目")]));
    } catch (err) {
      this.kbResults.replaceChildren(h("li", { class: "error" }, `搜索失败：${err.message || err}`));
    }
  }

  _hit(x) {
    return h("li", { class: "hit", dataset: { kbId: x.kb_id } },
      h("div", { class: "q" }, kbLink(x.kb_id, x.question), h("small", {}, `${x.category} · ${pct(x.score)}`),
        this.readonly ? null : h("button", { type: "button", class: "use",
          onclick: () => this.onUse({ id: null, type: "answer", script: x.answer, kb_id: x.kb_id }) }, "使用")),
      h("p", { class: "a" }, x.answer));
  }
}

function meta(c, tabindex) {
  const d = c.details || {};
  const out = [];
  if (c.kb_id) out.push("来源 ", kbLink(c.kb_id, d.question || c.kb_id, tabindex));
  if (c.type === "cross_sell") {
    out.push(h("span", { class: "sku" }, d.name || c.sku), d.price != null ? ` ¥${d.price}` : "", h("small", {}, c.sku));
  } else if (c.sku) out.push(h("small", {}, c.sku));
  if (d.tier && c.type === "recovery") out.push(h("small", {}, `${TIER[d.tier] || d.tier}额度内`));
  return out;
}

function kbLink(id, text, tabindex = null) {
  // A real link (embedders can open it with their token); in the page it opens the entry in place.
  return h("a", { class: "kb-link", href: `/v1/kb/entries/${encodeURIComponent(id)}`, dataset: { kbId: id }, tabindex,
    onclick: (e) => { e.preventDefault(); showEntry(id); } }, text);
}

async function showEntry(id) {
  const dialog = document.getElementById("kb-dialog");
  const box = document.getElementById("kb-entry");
  box.replaceChildren(h("p", { class: "muted" }, "加载中…"));
  dialog.showModal();
  try {
    const e = await api(`/v1/kb/entries/${encodeURIComponent(id)}`);
    box.replaceChildren(
      h("h2", {}, e.question), h("p", { class: "muted" }, `${e.category} · ${e.id} · 第 ${e.version} 版`),
      h("p", { class: "answer" }, e.answer),
      e.similar?.length ? h("p", { class: "muted" }, `相似问法：${e.similar.join(" / ")}`) : null,
    );
  } catch (err) {
    box.replaceChildren(h("p", { class: "error" }, `无法加载 ${id}：${err.message || err}`));
  }
}

/** Sparkline of the sentiment of every customer turn (-1..1), zero line dashed. */
function trend(values) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "trend");
  svg.setAttribute("viewBox", "0 0 100 24");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", values.length ? `情绪趋势：${values.map((v) => v.toFixed(2)).join("，")}` : "暂无情绪数据");
  const y = (v) => 12 - v * 9;
  const x = (i) => (values.length < 2 ? 50 : 3 + (i * 94) / (values.length - 1));
  const zero = document.createElementNS(NS, "line");
  for (const [k, v] of Object.entries({ x1: 0, x2: 100, y1: 12, y2: 12, class: "zero" })) zero.setAttribute(k, v);
  svg.append(zero);
  if (values.length > 1) {
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", values.map((v, i) => `${x(i)},${y(v)}`).join(" "));
    line.setAttribute("class", "line");
    svg.append(line);
  }
  values.forEach((v, i) => {
    // A zero-length line with a round, non-scaling cap: a round dot however the svg is stretched.
    const dot = document.createElementNS(NS, "line");
    for (const [k, val] of Object.entries({ x1: x(i), x2: x(i), y1: y(v), y2: y(v) })) dot.setAttribute(k, val);
    dot.setAttribute("class", `dot ${v < -0.3 ? "neg" : v > 0.3 ? "pos" : "neu"}`);
    svg.append(dot);
  });
  return svg;
}
