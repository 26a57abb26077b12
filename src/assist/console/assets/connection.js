// One WebSocket session with assist (/v1/ws, protocol v1): hello, resume, reconnect, outbox.
//
// Nothing is lost when the socket drops: every conversation frame has a seq and is stored by the
// service, so after reconnecting the page sends hello, then resume(last contiguous seq it has),
// then a ping. The pong comes after the whole replay (the server answers frames in order), and
// only then are frames that were never acknowledged (turns, feedback) sent again: turns are
// idempotent by turn_id, and a feedback acked during the drop is seen in the replay first.
//
// Events: "state" {state, message}, "frame" (a conversation frame with a seq, each seq once),
// "reply" (a connection-only frame: qa, error, pong, duplicate ack), "auth" (a token is needed).

const TOKEN_KEY = "assist.token";
const KEEPALIVE_MS = 25000;

export const tokens = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (t) => (t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY)),
};

export class Connection extends EventTarget {
  constructor({ conversationId, create = true, customer = null, url = null }) {
    super();
    this.conversationId = conversationId;
    this.create = create;
    this.customer = customer;
    this.url = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
    this.state = "idle";
    this.socket = null;
    this.seqs = new Set(); // every seq received
    this.contiguous = 0; // highest n with 1..n all received: what resume asks after
    this.outbox = new Map(); // key -> frame, until the service acknowledges it
    this.connects = 0; // sockets opened so far (tests and the status line read it)
    this._attempt = 0;
    this._sync = 0;
    this._timer = null;
    this._keepalive = null;
    this._stopped = false;
  }

  start() {
    this._stopped = false;
    // Back online: try at once instead of waiting out the backoff.
    window.addEventListener("online", () => {
      if (!this._stopped && !this.socket) this._connect();
    });
    this._connect();
  }

  stop() {
    this._stopped = true;
    clearTimeout(this._timer);
    this.socket?.close(1000, "bye");
  }

  /** Close the socket the way a dropped network would; the connection comes back by itself. */
  kill() {
    this.socket?.close(4000, "killed by the page");
  }

  _setState(state, message = "") {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, message } }));
  }

  _connect() {
    clearTimeout(this._timer);
    this._setState(this.connects ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._retry(String(err));
      return;
    }
    this.socket = ws;
    this.connects += 1;
    ws.onopen = () => this._hello();
    ws.onmessage = (ev) => this._receive(ws, ev.data);
    ws.onclose = (ev) => {
      if (this.socket !== ws) return;
      clearInterval(this._keepalive);
      this.socket = null;
      if (!this._stopped) this._retry(ev.reason || `连接已断开（${ev.code}）`);
    };
  }

  _retry(message) {
    if (this.state !== "auth") this._setState("reconnecting", message);
    // 0.25 s, 0.5 s ... at most 5 s, with jitter so a restarted service is not hit all at once.
    const wait = Math.min(5000, 250 * 2 ** this._attempt) * (0.75 + Math.random() * 0.5);
    this._attempt = Math.min(this._attempt + 1, 6);
    this._timer = setTimeout(() => this._connect(), wait);
  }

  _hello() {
    const hello = { v: 1, type: "hello", conversation_id: this.conversationId, create: this.create };
    const token = tokens.get();
    if (token) hello.token = token;
    if (this.customer) hello.customer = this.customer;
    this._raw(hello);
  }

  /** Answer the token prompt: retry hello on the open socket, or reconnect. */
  retryWithToken(token) {
    tokens.set(token);
    if (this.socket?.readyState === WebSocket.OPEN) this._hello();
    else this._connect();
  }

  _raw(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Send a frame. Turns and feedback wait in the outbox until acknowledged (sent again after a drop). */
  send(frame) {
    const key = outboxKey(frame);
    if (key) this.outbox.set(key, frame);
    if (this.state === "open") return this._raw(frame);
    return false;
  }

  /** Send only if open right now (drafts: a stale one is worth nothing later). */
  sendNow(frame) {
    return this.state === "open" && this._raw(frame);
  }

  _receive(ws, data) {
    if (this.socket !== ws) return;
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (f.type === "ack" && f.ref === "hello") {
      this._setState("syncing");
      this._sync += 1;
      this._raw({ v: 1, type: "resume", last_seq: this.contiguous });
      this._raw({ v: 1, type: "ping", nonce: `sync-${this._sync}` });
      return;
    }
    if (f.type === "pong" && f.nonce === `sync-${this._sync}`) {
      this._attempt = 0;
      this._setState("open");
      for (const frame of this.outbox.values()) this._raw(frame);
      clearInterval(this._keepalive);
      this._keepalive = setInterval(() => this._raw({ v: 1, type: "ping", nonce: "keepalive" }), KEEPALIVE_MS);
      return;
    }
    if (f.type === "ack") this._acked(f);
    if (f.type === "error") {
      this._failed(f);
      return;
    }
    if (typeof f.seq === "number") {
      if (this.seqs.has(f.seq)) return;
      this.seqs.add(f.seq);
      while (this.seqs.has(this.contiguous + 1)) this.contiguous += 1;
      this.dispatchEvent(new CustomEvent("frame", { detail: f }));
    } else {
      this.dispatchEvent(new CustomEvent("reply", { detail: f }));
    }
  }

  _acked(f) {
    if (f.ref === "turn" && f.turn_id) this.outbox.delete(`turn:${f.turn_id}`);
    if (f.ref === "feedback" && f.suggestion_id) this.outbox.delete(`feedback:${f.suggestion_id}`);
  }

  _failed(f) {
    if (f.ref === "hello") {
      if (f.code.startsWith("auth.")) {  // missing, invalid or forbidden key, or locked out: ask for a key
        this._setState("auth", f.message);
        this.dispatchEvent(new CustomEvent("auth", { detail: f }));
        return;
      }
      // not ready yet, conversation not found (listen-in before it starts): try again later.
      this._setState("reconnecting", f.message);
      this.socket?.close(1000, "retry");
      return;
    }
    // A rejected turn or feedback is not sent again; the page shows why.
    if (f.ref === "turn" && f.turn_id) this.outbox.delete(`turn:${f.turn_id}`);
    if (f.ref === "feedback") {
      const first = [...this.outbox.keys()].find((k) => k.startsWith("feedback:"));
      if (first) this.outbox.delete(first);
    }
    this.dispatchEvent(new CustomEvent("reply", { detail: f }));
  }
}

function outboxKey(frame) {
  if (frame.type === "turn") return `turn:${frame.turn_id}`;
  if (frame.type === "feedback") return `feedback:${frame.suggestion_id}`;
  return null;
}

/** fetch() against the REST API with the session's bearer token; throws {status, code, message}. */
export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const token = tokens.get();
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { ...options, headers });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw { status: res.status, code: body.code || "http", message: body.message || res.statusText };
  return body;
}
