// Entry point of /console (chat + panel) and /console/panel (the panel alone, for an iframe).
//
// URL parameters:
//   conversation=ID  open that conversation: its history from seq 0, then live (listen-in);
//                    without it a new conversation is started with a demo customer who bought
//                    diapers (customer=none: without one)
//   readonly=1       watch only: no input, no use / dismiss; the conversation must exist
//
// window.assistConsole exposes {conversation, connection, chat, panel} to tests and embedders.

import { Chat } from "./chat.js";
import { api, Connection } from "./connection.js";
import { Conversation } from "./conversation.js";
import { CONNECTION } from "./labels.js";
import { Panel } from "./panel.js";

const params = new URLSearchParams(location.search);
// One page for both: /console/panel shows the assist panel alone.
const mode = location.pathname.replace(/\/+$/, "").endsWith("/panel") ? "panel" : "console";
document.body.dataset.mode = mode;
const readonly = params.get("readonly") === "1";
let conversationId = params.get("conversation");
let customer = null;
if (!conversationId) {
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(2, 14);
  const suffix = `${stamp}-${Math.random().toString(36).slice(2, 6)}`;
  conversationId = `console-${suffix}`;
  if (params.get("customer") !== "none") customer = demoCustomer(`demo-${suffix}`);
  params.set("conversation", conversationId);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}
document.getElementById("conv-id").textContent = conversationId;
document.body.classList.toggle("readonly", readonly);

const conversation = new Conversation(conversationId);
const connection = new Connection({ conversationId, create: !readonly, customer });
const panel = new Panel(document.getElementById("panel"), {
  conversation, readonly,
  onUse: (card) => (chat ? chat.useCard(card) : useOutside(card)),
  onDismiss: (card) => {
    conversation.dismiss(card.id);
    connection.send({ v: 1, type: "feedback", suggestion_id: card.id, outcome: "dismissed" });
  },
});
const chat = mode === "console" ? new Chat({ conversation, connection, readonly }) : null;
window.assistConsole = { conversation, connection, chat, panel };

connection.addEventListener("frame", (e) => {
  conversation.add(e.detail);
  if (mode === "console" && conversation.missingTexts().length) fetchTexts();
});
connection.addEventListener("state", (e) => showState(e.detail));
connection.addEventListener("auth", (e) => askToken(e.detail.message));
connection.start();

// --- turn texts of other clients ----------------------------------------------------------------

let fetching = null;
let again = false;
async function fetchTexts() {
  if (fetching) {
    again = true;
    return;
  }
  fetching = api(`/v1/conversations/${encodeURIComponent(conversationId)}`)
    .then((t) => conversation.addTexts(t.turns))
    .catch(() => {}) // the next frame tries again
    .finally(() => {
      fetching = null;
      if (again) {
        again = false;
        fetchTexts();
      }
    });
}

// --- connection state and token ------------------------------------------------------------------

function showState({ state, message }) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.textContent = CONNECTION[state] || state;
  el.title = message || "";
}

function askToken(message) {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").textContent = sessionStorage.getItem("assist.token") ? `令牌无效：${message}` : "";
  if (!dialog.open) dialog.showModal();
  input.value = "";
  input.focus();
  dialog.onclose = () => {
    if (input.value) connection.retryWithToken(input.value);
  };
}

// --- the panel alone: "use" goes to the page that embeds it ---------------------------------------

function useOutside(card) {
  // The embedding chat UI listens for this and puts the script into its own input box.
  window.parent?.postMessage({ source: "assist", type: "use", action: { id: card.id, type: card.type, script: card.script } }, "*");
  navigator.clipboard?.writeText(card.script).catch(() => {});
}

// --- keyboard -------------------------------------------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (e.altKey && !e.ctrlKey && !e.metaKey && /^Digit[1-9]$/.test(e.code) && !readonly) {
    const card = panel.topCard(Number(e.code.slice(5)) - 1);
    if (card?.script) {
      e.preventDefault();
      panel.onUse(card);
    }
  } else if (e.altKey && e.code === "KeyR" && chat && !readonly) {
    e.preventDefault();
    chat.role = chat.role === "agent" ? "customer" : "agent";
    chat.input.focus();
  } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
    e.preventDefault();
    document.getElementById("kb-q").focus();
  } else if (e.key === "Escape" && chat && !readonly && !document.querySelector("dialog[open]")) {
    chat.input.focus();
  }
});

function demoCustomer(id) {
  const day = 86400e3;
  const at = (days) => new Date(Date.now() - days * day).toISOString();
  return { id, tier: "normal", orders: [
    { order_id: `${id}-1`, sku: "MB-DP-003", status: "delivered", paid_at: at(5), delivered_at: at(3) }] };
}
