// ragkit playground: fetches the server-rendered views with the bearer token and puts them in place.
// Rule: the only HTML put into the page is what the server rendered with Jinja2's autoescape, parsed
// with DOMParser (scripts in it never run); text this script handles itself (the streamed answer,
// citations, statuses) goes in with textContent. No innerHTML, no eval, no inline handlers.
"use strict";

const TOKEN_KEY = "ragkit-token";
const $ = (selector, root = document) => root.querySelector(selector);
const chat = { messages: [] };

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: "Bearer " + token } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (response.status === 401) {
    askForToken("The server refused the token.");
    throw new Error("unauthorized");
  }
  return response;
}

function swap(target, html) {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  target.replaceChildren(...parsed.body.childNodes);
}

async function load(target, path, options) {
  const response = await api(path, options);
  swap(target, await response.text());
}

function askForToken(message) {
  const form = $("#token-form");
  form.hidden = false;
  $("#token-error").textContent = sessionStorage.getItem(TOKEN_KEY) ? message : "";
  $("#views").replaceChildren();
}

function query(form) {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value !== "") params.append(key, value);
  return params.toString();
}

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const view of document.querySelectorAll("[data-view]")) view.hidden = view.dataset.view !== name;
}

async function openPassage(button) {
  const panel = $("#passage");
  const params = new URLSearchParams({ doc_id: button.dataset.doc, chunk_id: button.dataset.chunk });
  await load(panel, "/ui/passage?" + params);
  panel.hidden = false;
}

// -- chat: stream the answer, markers become buttons once the sources arrive -----------------------
function renderAnswer(target, text, sources) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    parts.push(document.createTextNode(text.slice(last, match.index)));
    const source = sources && sources.find((s) => String(s.marker) === match[1]);
    const marker = document.createElement(source ? "button" : "span");
    marker.className = "marker";
    marker.textContent = match[0];
    if (source) {
      marker.type = "button";
      marker.classList.add("open");
      marker.dataset.doc = source.doc_id;
      marker.dataset.chunk = source.chunk_id;
      marker.title = source.source || source.doc_id;
    }
    parts.push(marker);
    last = match.index + match[0].length;
  }
  parts.push(document.createTextNode(text.slice(last)));
  target.replaceChildren(...parts);
}

function addTurn(role, text) {
  const turn = document.createElement("div");
  turn.className = "turn " + role;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  turn.append(body);
  $("#chat-log").append(turn);
  return turn;
}

async function ask(message) {
  chat.messages.push({ role: "user", content: message });
  addTurn("user", message);
  const turn = addTurn("assistant", "");
  const body = $(".text", turn);
  turn.classList.add("streaming");
  const response = await api("/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: chat.messages, stream: true }),
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    body.textContent = (problem.error && problem.error.message) || "HTTP " + response.status;
    turn.classList.add("failed");
    chat.messages.pop();
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "", id = "", sources = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const event = JSON.parse(line.slice(6));
      if (event.error) { body.textContent = event.error.message; turn.classList.add("failed"); return; }
      id = id || event.id;
      for (const choice of event.choices || []) text += (choice.delta && choice.delta.content) || "";
      if (event.sources) sources = event.sources;
      renderAnswer(body, text, sources);
    }
  }
  turn.classList.remove("streaming");
  turn.dataset.completion = id;
  chat.messages.push({ role: "assistant", content: text });
  const meta = document.createElement("div");
  meta.className = "meta";
  turn.append(meta);
  await load(meta, "/ui/completion/" + encodeURIComponent(id));
}

async function sendFeedback(form, rating) {
  const status = $(".feedback-status", form);
  const payload = { completion_id: form.dataset.completion, rating: rating || null,
                    correction: form.elements.correction.value || null, comment: form.elements.comment.value || null };
  const response = await api("/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify(payload) });
  const result = await response.json();
  status.textContent = response.ok ? "saved (" + (result.approved ? "approved" : "not approved") + ")"
                                   : (result.error && result.error.message) || "HTTP " + response.status;
  form.dataset.saved = response.ok ? (rating || "corrected") : "";
}

// -- wiring ---------------------------------------------------------------------------------------
async function start() {
  try {
    await load($("#views"), "/ui/views");
  } catch (error) {
    return;
  }
  $("#token-form").hidden = true;
  showTab(document.querySelector("#tabs button.active").dataset.tab);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#tabs").addEventListener("click", (event) => { if (event.target.dataset.tab) showTab(event.target.dataset.tab); });
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, event.target.elements.token.value);
    start();
  });
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.id === "token-form") return;
    event.preventDefault();
    if (form.id === "search-form") await load($("#search-results"), "/ui/search?" + query(form));
    else if (form.id === "compare-form") await load($("#compare-results"), "/ui/compare?" + query(form));
    else if (form.id === "prompt-form") {
      const data = Object.fromEntries(new FormData(form));
      if (form.elements.template_source.hidden) delete data.template_source;
      await load($("#prompt-result"), "/ui/prompt", { method: "POST", headers: { "Content-Type": "application/json" },
                                                      body: JSON.stringify(data) });
    } else if (form.id === "chat-form") {
      const message = form.elements.message.value.trim();
      form.elements.message.value = "";
      if (message) await ask(message);
    } else if (form.classList.contains("feedback-form")) await sendFeedback(form, null);
  });
  document.addEventListener("click", async (event) => {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.classList.contains("open")) await openPassage(target);
    else if (target.classList.contains("close")) $("#passage").hidden = true;
    else if (target.classList.contains("rate")) await sendFeedback(target.closest("form"), target.dataset.rating);
    else if (target.id === "chat-reset") { chat.messages = []; $("#chat-log").replaceChildren(); }
    else if (target.id === "edit-template") {
      const form = $("#prompt-form");
      const box = form.elements.template_source;
      const name = form.elements.template.value || "qa";
      const response = await api("/ui/template?" + new URLSearchParams({ name }));
      box.value = (await response.json()).source;
      box.hidden = false;
    }
  });
  start();
});
