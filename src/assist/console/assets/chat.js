// The chat pane: the conversation's messages and the composer with QA before send.
//
// While the agent types, the draft is sent as {"type": "draft"} (debounced) and the answering
// {"type": "qa"} frame's spans are underlined in a backdrop behind the textarea, before Enter.

import { h, marked } from "./dom.js";
import { INTENT, ORDER_EVENT, SENTIMENT } from "./labels.js";

const DRAFT_DEBOUNCE_MS = 250;

const EVENT_TEXT = {
  "conversation.resolved": "坐席已将问题标记为已解决",
  "escalation.created": "已升级给主管",
  "profile.updated": "顾客档案已更新",
  "promise.overdue": "有承诺已超时",
};

export class Chat {
  constructor({ conversation, connection, readonly = false }) {
    this.conversation = conversation;
    this.connection = connection;
    this.readonly = readonly;
    this.list = document.getElementById("messages");
    this.form = document.getElementById("composer");
    this.input = document.getElementById("input");
    this.backdrop = document.getElementById("backdrop");
    this.flagsList = document.getElementById("qa-flags");
    this.used = null; // {id, script} of the card whose script is in the input
    this.flags = [];
    this.draftId = 0;
    this._draftTimer = null;
    if (readonly) this.form.hidden = true;
    this._wire();
    conversation.addEventListener("change", () => this.render());
    connection.addEventListener("reply", (e) => this._reply(e.detail));
    this.render();
  }

  get role() {
    return this.form.querySelector("input[name=role]:checked").value;
  }

  set role(value) {
    this.form.querySelector(`input[name=role][value=${value}]`).checked = true;
    this.form.dataset.role = value;
    this._draftChanged();
  }

  _wire() {
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        this.send();
      }
    });
    this.input.addEventListener("input", () => this._draftChanged());
    this.input.addEventListener("scroll", () => {
      this.backdrop.scrollTop = this.input.scrollTop;
    });
    for (const r of this.form.querySelectorAll("input[name=role]")) {
      r.addEventListener("change", () => {
        this.form.dataset.role = this.role;
        this._draftChanged();
        this.input.focus();
      });
    }
    this.form.dataset.role = this.role;
    this.form.querySelector("#resolve")?.addEventListener("click", () => {
      this.connection.send({ v: 1, type: "resolve" });
    });
  }

  /** Put a card's script into the input for editing; sending it reports accepted or edited. */
  useCard(card) {
    this.role = "agent";
    this.input.value = card.script;
    this.used = card.id ? { id: card.id, script: card.script } : null;
    this._draftChanged();
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  send() {
    const text = this.input.value.trim();
    if (!text) return;
    const role = this.role;
    const turnId = `${role === "agent" ? "a" : "c"}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
    if (role === "agent" && this.used) {
      const edited = text !== this.used.script.trim();
      this.connection.send({ v: 1, type: "feedback", suggestion_id: this.used.id,
        outcome: edited ? "edited" : "accepted", edited_text: edited ? text : null });
    }
    this.used = null;
    this.conversation.addSent({ turn_id: turnId, role, text });
    this.connection.send({ v: 1, type: "turn", turn_id: turnId, role, text });
    this.input.value = "";
    this._draftChanged();
  }

  _draftChanged() {
    const text = this.input.value;
    if (!text.trim()) this.used = null;
    this._renderBackdrop();
    clearTimeout(this._draftTimer);
    if (this.role !== "agent" || !text.trim()) {
      this.draftId += 1; // any answer still on its way is stale
      this.flags = [];
      this._renderBackdrop();
      return;
    }
    this._draftTimer = setTimeout(() => {
      this.draftId += 1;
      this.connection.sendNow({ v: 1, type: "draft", text, draft_id: this.draftId });
    }, DRAFT_DEBOUNCE_MS);
  }

  _reply(f) {
    if (f.type === "qa" && f.draft_id === this.draftId) {
      this.flags = f.flags;
      this._renderBackdrop();
    } else if (f.type === "error" && f.ref === "turn" && f.turn_id) {
      this.conversation.fail(f.turn_id, f.message);
    }
  }

  _renderBackdrop() {
    const text = this.input.value;
    const chars = Array.from(text);
    // Spans of an older draft stay only where the text under them is unchanged.
    const spans = this.flags.flatMap((fl) => fl.spans.map((s) => ({ ...s, code: fl.code, reason: fl.reason })))
      .filter((s) => s.code === "personal_data" ? s.end <= chars.length : chars.slice(s.start, s.end).join("") === s.text);
    this.backdrop.replaceChildren(...marked(text, spans, (s) => ({ class: `qa-mark ${s.code}`, dataset: { code: s.code } })), "\n");
    this.backdrop.scrollTop = this.input.scrollTop;
    const live = new Set(spans.map((s) => s.code));
    const shown = this.flags.filter((fl) => live.has(fl.code));
    this.flagsList.replaceChildren(...shown.map((fl) => h("li", { class: `qa-flag ${fl.code}`, dataset: { code: fl.code },
      title: fl.hint }, h("strong", {}, fl.reason), " ", h("span", {}, fl.hint))));
    this.form.classList.toggle("flagged", shown.length > 0);
  }

  render() {
    const view = this.conversation.view();
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const items = [
      ...view.turns.map((t) => ({ seq: t.seq, el: this._message(t) })),
      ...view.events.map((e) => ({ seq: e.seq, el: this._event(e) })),
    ].sort((a, b) => a.seq - b.seq);
    this.list.replaceChildren(...(items.length ? items.map((i) => i.el)
      : [h("li", { class: "empty" }, this.readonly ? "等待会话消息…" : "还没有消息。切换到「顾客」身份输入一句话试试，例如：宝宝屁股红红的用什么好")]));
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  _message(t) {
    const a = t.analysis;
    const alerts = a?.role === "agent" ? a.actions.filter((x) => x.type === "qa_alert") : [];
    const spans = alerts.flatMap((x) => (x.details?.spans || []).map((s) => ({ ...s, code: x.details.code })));
    const body = t.text == null ? [h("span", { class: "muted" }, "…")]
      : marked(t.text, spans, (s) => ({ class: `qa-mark ${s.code}`, dataset: { code: s.code } }));
    const chips = [];
    if (a?.intent) chips.push(h("span", { class: "chip" }, INTENT[a.intent.label] || a.intent.label));
    if (a?.sentiment) chips.push(h("span", { class: `chip ${a.sentiment.label}` }, SENTIMENT[a.sentiment.label]));
    for (const x of alerts) chips.push(h("span", { class: `chip qa ${x.details?.code}`, title: x.script }, x.reason));
    if (t.error) chips.push(h("span", { class: "chip error" }, `未发送：${t.error}`));
    else if (t.pending) chips.push(h("span", { class: "chip muted" }, "发送中…"));
    return h("li", { class: `msg ${t.role || "unknown"}${t.pending ? " pending" : ""}`, dataset: { turnId: t.turn_id, role: t.role || "" } },
      h("span", { class: "who" }, t.role === "agent" ? "坐席" : t.role === "customer" ? "顾客" : ""),
      h("div", { class: "bubble" }, ...body),
      chips.length ? h("div", { class: "chips" }, ...chips) : null);
  }

  _event(e) {
    const order = e.event.startsWith("order.") ? e.event.slice(6) : null;
    const text = EVENT_TEXT[e.event]
      || (order ? `订单 ${e.data?.order_id || ""} ${ORDER_EVENT[order] || order}` : e.event);
    return h("li", { class: "system", dataset: { event: e.event } }, text);
  }
}
