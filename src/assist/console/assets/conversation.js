// What the page knows about one conversation, and the view derived from it.
//
// The store keeps every frame by seq and derives the view from all of them in seq order on each
// change, so frames arriving out of order (live frames overtaking a resume replay) or twice
// change nothing. Turn texts are not in the frames: they come from what this page sent and from
// the REST transcript (GET /v1/conversations/{id}) for turns another client sent.

export class Conversation extends EventTarget {
  constructor(id) {
    super();
    this.id = id;
    this.frames = new Map(); // seq -> frame
    this.texts = new Map(); // turn_id -> {role, text, ts}
    this.sent = []; // turns sent by this page, in order: {turn_id, role, text}
    this.dismissed = new Set(); // suggestion ids dismissed here (hidden before the service confirms)
    this.failed = new Map(); // turn_id -> error message
    this._view = null;
  }

  _changed() {
    this._view = null;
    this.dispatchEvent(new Event("change"));
  }

  add(frame) {
    this.frames.set(frame.seq, frame);
    this._changed();
  }

  addTexts(turns) {
    for (const t of turns) this.texts.set(t.turn_id, { role: t.role, text: t.text, ts: t.ts });
    this._changed();
  }

  addSent(turn) {
    this.sent.push(turn);
    this.texts.set(turn.turn_id, { role: turn.role, text: turn.text });
    this._changed();
  }

  dismiss(id) {
    this.dismissed.add(id);
    this._changed();
  }

  fail(turnId, message) {
    this.failed.set(turnId, message);
    this._changed();
  }

  /** Turn ids with a stored frame but no known text (another client sent them). */
  missingTexts() {
    return this.view().turns.filter((t) => t.text == null).map((t) => t.turn_id);
  }

  view() {
    if (!this._view) this._view = derive(this);
    return this._view;
  }
}

/** Same kind of suggestion for the same thing: a dismissed one must not come back under a new id. */
export const suggestionKey = (s) => `${s.type}:${s.kb_id || s.sku || s.id}`;

function derive(conv) {
  const frames = [...conv.frames.values()].sort((a, b) => a.seq - b.seq);
  const turns = [];
  const events = []; // CRM and conversation events, shown as system lines between the turns
  const byTurn = new Map();
  const turnOf = (id, seq) => {
    let t = byTurn.get(id);
    if (!t) {
      const known = conv.texts.get(id) || {};
      t = { turn_id: id, seq, role: known.role, text: known.text, analysis: null, pending: false };
      byTurn.set(id, t);
      turns.push(t);
    }
    return t;
  };
  let state = null;
  let lastCustomer = null;
  let cardsFrom = 0; // index of the frame the current suggestions start from
  frames.forEach((f, i) => {
    if (f.type === "ack" && f.ref === "turn" && f.turn_id) turnOf(f.turn_id, f.seq);
    else if (f.type === "analysis") {
      const t = turnOf(f.turn_id, f.seq);
      t.analysis = f;
      t.role = f.role;
      state = f.state;
      if (f.role === "customer") {
        lastCustomer = f;
        cardsFrom = i;
      }
    } else if (f.type === "event") {
      if (f.state) state = f.state;
      if (f.event !== "suggestion.feedback") events.push(f);
    }
  });
  for (const s of conv.sent) {
    if (!byTurn.has(s.turn_id)) {
      const t = { ...s, seq: Infinity, analysis: null, pending: true, error: conv.failed.get(s.turn_id) };
      byTurn.set(s.turn_id, t);
      turns.push(t);
    }
  }

  // The suggestions that stand: those of the last customer turn and of the events after it
  // (resolve, order events), newest first, minus qa alerts (shown on the agent's messages) and
  // minus anything dismissed, here or by another console.
  const statuses = state?.suggestions || {};
  const dismissedKeys = new Set(
    Object.values(statuses).filter((s) => s.status === "dismissed").map(suggestionKey),
  );
  const cards = [];
  const seen = new Set();
  for (let i = frames.length - 1; i >= cardsFrom; i -= 1) {
    const f = frames[i];
    const fromCustomer = f.type === "analysis" && f.role === "customer";
    if (!(fromCustomer || (f.type === "event" && f.event !== "escalation.created"))) continue;
    for (const a of f.actions || []) {
      if (a.type === "qa_alert" || seen.has(a.id)) continue;
      seen.add(a.id);
      const status = statuses[a.id]?.status || "shown";
      if (status === "dismissed" || conv.dismissed.has(a.id) || dismissedKeys.has(suggestionKey(a))) continue;
      cards.push({ ...a, status });
    }
  }
  return { turns, events, state, lastCustomer, cards };
}
