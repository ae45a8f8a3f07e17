// privnum ops console: plain JavaScript over the admin API (README, "Ops console").
// The admin token is kept in sessionStorage (this tab only) and sent as a bearer token; every
// value from the server is put on the page as text, never as HTML.
"use strict";

const TOKEN_KEY = "privnum.adminToken";
const PAGES = ["tones", "scripts", "pushes", "calls"];

const $ = (id) => document.getElementById(id);

/** An element with attributes (`on…` are listeners) and children (strings become text). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, body) {
    const desc = (body && body.resultdesc) || `HTTP ${status}`;
    super(desc);
    this.status = status;
    this.body = body;
  }
}

/** Calls the admin API; resolves to the JSON body (or the raw response for `raw`). */
async function api(method, path, body, raw) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/v1/admin${path}`, init);
  if (response.status === 401) {
    signOut("The server refused the admin token. Sign in again.");
    throw new ApiError(401, null);
  }
  if (raw && response.ok) return response;
  let json = null;
  try {
    json = await response.json();
  } catch (_) {
    json = null;
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

function flash(message, isError) {
  const node = $("flash");
  node.textContent = message;
  node.className = isError ? "error" : "";
  node.hidden = !message;
}

function failed(what) {
  return (err) => {
    if (err instanceof ApiError && err.status === 401) return;
    flash(`${what}: ${err.message}`, true);
  };
}

function time(value) {
  if (value === undefined || value === null || value === "") return "";
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return isNaN(date) ? String(value) : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function table(columns, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, columns.map((column) => el("th", {}, column.title)))),
    el(
      "tbody",
      {},
      rows.map((row) => el("tr", row.attrs || {}, columns.map((column) => el("td", { class: column.class }, column.cell(row))))),
    ),
  );
}

function stateBadge(state) {
  return el("span", { class: `state ${state}` }, state);
}

// ---- sign-in and navigation ----

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("nav").hidden = true;
  for (const page of PAGES) $(`page-${page}`).hidden = true;
  $("login").hidden = false;
  flash("");
  const error = $("login-error");
  error.textContent = message || "";
  error.hidden = !message;
}

async function signIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api("GET", "/scripts");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) signOut(`Cannot reach the admin API: ${err.message}`);
    return;
  }
  $("token").value = "";
  if (!PAGES.includes(location.hash.slice(1))) location.hash = "#tones";
  else show();
}

function show() {
  if (!token()) {
    signOut();
    return;
  }
  $("login").hidden = true;
  $("nav").hidden = false;
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "tones";
  for (const name of PAGES) $(`page-${name}`).hidden = name !== page;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.page === page);
  flash("");
  LOADERS[page]();
}

// ---- tones ----

/** G.711 A-law byte to a 16-bit sample. */
function alawSample(byte) {
  let a = byte ^ 0x55;
  let t = (a & 0x0f) << 4;
  const segment = (a & 0x70) >> 4;
  if (segment === 0) t += 8;
  else if (segment === 1) t += 0x108;
  else t = (t + 0x108) << (segment - 1);
  return a & 0x80 ? t : -t;
}

/** G.711 µ-law byte to a 16-bit sample. */
function ulawSample(byte) {
  const u = ~byte & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  return u & 0x80 ? 0x84 - t : t - 0x84;
}

/**
 * A WAV every browser plays: an A-law or µ-law WAV (the carrier's format) is decoded to 16-bit
 * PCM here, since not every browser decodes G.711; anything else is returned as it is.
 */
function playable(buffer) {
  const view = new DataView(buffer);
  const tag = (offset) => String.fromCharCode(...new Uint8Array(buffer, offset, 4));
  if (buffer.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return buffer;
  let format = null;
  let data = null;
  for (let offset = 12; offset + 8 <= buffer.byteLength; ) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const start = offset + 8;
    if (id === "fmt " && size >= 16) {
      format = { code: view.getUint16(start, true), channels: view.getUint16(start + 2, true), rate: view.getUint32(start + 4, true) };
    } else if (id === "data") {
      data = new Uint8Array(buffer, start, Math.min(size, buffer.byteLength - start));
    }
    offset = start + size + (size % 2);
  }
  if (!format || !data || (format.code !== 6 && format.code !== 7)) return buffer;
  const decode = format.code === 6 ? alawSample : ulawSample;
  const out = new DataView(new ArrayBuffer(44 + data.length * 2));
  const write = (offset, text) => [...text].forEach((c, i) => out.setUint8(offset + i, c.charCodeAt(0)));
  write(0, "RIFF");
  out.setUint32(4, 36 + data.length * 2, true);
  write(8, "WAVE");
  write(12, "fmt ");
  out.setUint32(16, 16, true);
  out.setUint16(20, 1, true);
  out.setUint16(22, format.channels, true);
  out.setUint32(24, format.rate, true);
  out.setUint32(28, format.rate * format.channels * 2, true);
  out.setUint16(32, format.channels * 2, true);
  out.setUint16(34, 16, true);
  write(36, "data");
  out.setUint32(40, data.length * 2, true);
  data.forEach((byte, i) => out.setInt16(44 + i * 2, decode(byte), true));
  return out.buffer;
}

const toneUrls = [];

function tonePath(appKey, fileName) {
  return `/apps/${encodeURIComponent(appKey)}/tones/${encodeURIComponent(fileName)}`;
}

async function loadToneAudio(card, appKey, tone) {
  const audio = card.querySelector("audio");
  const status = card.querySelector(".audio-status");
  status.textContent = "loading the audio…";
  try {
    const response = await api("GET", tonePath(appKey, tone.fileName), undefined, true);
    const revision = Number(response.headers.get("X-Tone-Revision"));
    const state = response.headers.get("X-Tone-State");
    const bytes = await response.arrayBuffer();
    const url = URL.createObjectURL(new Blob([playable(bytes)], { type: "audio/wav" }));
    toneUrls.push(url);
    audio.src = url;
    card.dataset.revision = String(revision);
    status.textContent = `revision ${revision} (${state}), ${bytes.byteLength} bytes`;
    for (const button of card.querySelectorAll(".review button")) button.disabled = false;
  } catch (err) {
    status.textContent = `the audio did not load: ${err.message}`;
    status.className = "audio-status error";
  }
}

async function review(card, appKey, tone, approve) {
  const reason = card.querySelector(".reason").value.trim();
  if (!approve && !reason) {
    flash(`Say why ${tone.fileName} is rejected: a rejection needs a reason.`, true);
    return;
  }
  const body = { approve, revision: Number(card.dataset.revision) };
  if (!approve) body.reason = reason;
  try {
    const reviewed = await api("POST", `${tonePath(appKey, tone.fileName)}/review`, body);
    await loadTones();
    flash(`${reviewed.fileName} of ${appKey}: ${reviewed.state} (revision ${reviewed.revision}).`);
  } catch (err) {
    failed(`Reviewing ${tone.fileName}`)(err);
  }
}

function toneCard(appKey, tone) {
  const card = el(
    "div",
    { class: "card tone", dataset: { app: appKey, tone: tone.fileName } },
    el("h4", {}, tone.fileName, " ", el("span", { class: "meta" }, `app ${appKey}`)),
    el(
      "div",
      { class: "meta" },
      `revision ${tone.revision} · ${Number(tone.seconds).toFixed(1)} s · ${tone.bytes} bytes · uploaded ${time(tone.uploadedAt)}`,
      tone.converted ? " · converted to the carrier format" : "",
      tone.serving ? ` · revision ${tone.servingRevision} plays meanwhile` : " · nothing plays until approved",
    ),
    el("audio", { controls: true, preload: "auto" }),
    el("div", { class: "meta audio-status" }),
    el(
      "div",
      { class: "review" },
      el("button", { type: "button", class: "approve", disabled: true, onclick: () => review(card, appKey, tone, true) }, "Approve"),
      el("input", { class: "reason", placeholder: "reason, to reject", maxlength: 500 }),
      el("button", { type: "button", class: "reject danger", disabled: true, onclick: () => review(card, appKey, tone, false) }, "Reject"),
    ),
  );
  loadToneAudio(card, appKey, tone);
  return card;
}

async function loadTones() {
  while (toneUrls.length) URL.revokeObjectURL(toneUrls.pop());
  const pending = $("tones-pending");
  const all = $("tones-all");
  try {
    const { apps } = await api("GET", "/apps");
    const lists = await Promise.all(
      apps.map(async (app) => ({ appKey: app.app_key, tones: (await api("GET", `/apps/${encodeURIComponent(app.app_key)}/tones`)).tones })),
    );
    const rows = lists.flatMap(({ appKey, tones }) => tones.map((tone) => ({ appKey, tone })));
    const waiting = rows.filter((row) => row.tone.state === "pending");
    pending.replaceChildren(
      ...(waiting.length ? waiting.map((row) => toneCard(row.appKey, row.tone)) : [el("p", { class: "empty" }, "No tone waits for review.")]),
    );
    all.replaceChildren(
      table(
        [
          { title: "app", cell: (row) => row.appKey },
          { title: "tone", cell: (row) => el("span", { class: "mono" }, row.tone.fileName) },
          { title: "state", cell: (row) => stateBadge(row.tone.state) },
          { title: "revision", class: "num", cell: (row) => row.tone.revision },
          { title: "plays", cell: (row) => (row.tone.serving ? `revision ${row.tone.servingRevision}` : "no") },
          { title: "reason", cell: (row) => row.tone.reason || "" },
          { title: "uploaded", cell: (row) => time(row.tone.uploadedAt) },
        ],
        rows,
        "No app has tones yet.",
      ),
    );
  } catch (err) {
    failed("Loading the tones")(err);
  }
}

// ---- scripts ----

async function loadScripts() {
  try {
    const { scripts } = await api("GET", "/scripts");
    const list = (items) => (items && items.length ? el("span", { class: "mono" }, items.join(", ")) : el("span", { class: "empty" }, "none"));
    $("scripts-status").replaceChildren(
      el(
        "dl",
        {},
        el("dt", {}, "Active version"),
        el("dd", { id: "scripts-active", class: "mono" }, scripts.active),
        el("dt", {}, "Files"),
        el("dd", {}, list(scripts.files)),
        el("dt", {}, "Cases passed"),
        el("dd", {}, String(scripts.cases_passed)),
        el("dt", {}, "Earlier versions"),
        el("dd", {}, list(scripts.previous)),
        el("dt", {}, "Last error"),
        el("dd", { id: "scripts-last-error" }, scripts.last_error ? el("pre", { class: "error" }, scripts.last_error) : el("span", { class: "ok" }, "none")),
        el("dt", {}, "Reloads"),
        el("dd", {}, `${scripts.reloads} applied, ${scripts.rejected} refused, ${scripts.attempts} tried; ${scripts.runtime_errors} runtime errors`),
      ),
    );
    $("scripts-rollback").disabled = !(scripts.previous && scripts.previous.length);
  } catch (err) {
    failed("Loading the scripts' status")(err);
  }
}

async function reloadScripts() {
  const outcome = $("scripts-outcome");
  outcome.textContent = "reloading…";
  try {
    const answer = await api("POST", "/scripts/reload");
    const text = {
      reloaded: `Reloaded: version ${answer.version} is active.`,
      unchanged: `Unchanged: the files on disk are version ${answer.version}, already active.`,
      rolled_back: `Refused: version ${answer.version} stays active. ${answer.error || ""}`,
    }[answer.outcome] || `${answer.outcome}: version ${answer.version}`;
    outcome.replaceChildren(stateBadge(answer.outcome), " ", text);
  } catch (err) {
    outcome.textContent = "";
    failed("Reloading the scripts")(err);
  }
  await loadScripts();
}

async function rollbackScripts() {
  const outcome = $("scripts-outcome");
  try {
    const answer = await api("POST", "/scripts/rollback");
    outcome.replaceChildren(stateBadge("rolled_back"), " ", `Rolled back: version ${answer.version} is active.`);
  } catch (err) {
    failed("Rolling back")(err);
  }
  await loadScripts();
}

// ---- pushes ----

function genericTable(items, empty) {
  const keys = [...new Set(items.flatMap((item) => Object.keys(item)))];
  const cell = (value) => (value !== null && typeof value === "object" ? JSON.stringify(value) : value ?? "");
  return table(keys.map((key) => ({ title: key, cell: (item) => cell(item[key]) })), items, empty);
}

async function loadPushes() {
  const backlog = $("pushes-backlog");
  try {
    const { pushes } = await api("GET", "/pushes");
    backlog.replaceChildren(genericTable(pushes, "Nothing waits for delivery."));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      backlog.replaceChildren(el("p", { class: "empty" }, "This server does not report a backlog per app (GET /v1/admin/pushes); its dead letters are below."));
    } else {
      failed("Loading the push backlog")(err);
    }
  }
  try {
    const { pushes } = await api("GET", "/pushes/dead");
    $("pushes-dead").replaceChildren(
      table(
        [
          { title: "id", class: "num", cell: (push) => push.id },
          { title: "app", cell: (push) => push.app_key },
          { title: "kind", cell: (push) => push.lane },
          { title: "attempts", class: "num", cell: (push) => push.attempts },
          { title: "created", cell: (push) => time(push.created_at_ms) },
          { title: "last error", cell: (push) => push.last_error || "" },
          { title: "body", cell: (push) => el("details", {}, el("summary", {}, "show"), el("pre", {}, JSON.stringify(push.body, null, 2))) },
          {
            title: "",
            cell: (push) =>
              el("button", { type: "button", class: "redeliver quiet", onclick: (event) => redeliver(event.target, push) }, "Redeliver"),
          },
        ],
        pushes,
        "No dead letters.",
      ),
    );
  } catch (err) {
    failed("Loading the dead letters")(err);
  }
}

async function redeliver(button, push) {
  button.disabled = true;
  try {
    const answer = await api("POST", `/pushes/dead/${encodeURIComponent(push.id)}/redeliver`);
    await loadPushes();
    flash(`Push ${push.id} of ${push.app_key} is back in its lane as push ${answer.id}.`);
  } catch (err) {
    button.disabled = false;
    failed(`Redelivering push ${push.id}`)(err);
  }
}

// ---- calls ----

async function loadCalls() {
  const app = $("calls-app").value.trim();
  const query = new URLSearchParams({ limit: "200" });
  if (app) query.set("app", app);
  try {
    const answer = await api("GET", `/calls?${query}`);
    const shown = answer.calls.length < answer.total ? `${answer.calls.length} of ${answer.total} live calls shown (the oldest ${answer.limit}).` : `${answer.total} live call${answer.total === 1 ? "" : "s"}.`;
    $("calls-list").replaceChildren(
      el("p", { class: "meta", id: "calls-count" }, shown, " ", el("button", { type: "button", class: "quiet", onclick: loadCalls }, "Refresh")),
      table(
        [
          { title: "started", cell: (call) => time(call.startedAt) },
          { title: "app", cell: (call) => call.appKey || "" },
          { title: "mode", cell: (call) => call.mode || "" },
          { title: "X", cell: (call) => el("span", { class: "mono" }, call.x) },
          { title: "caller", cell: (call) => el("span", { class: "mono" }, call.caller) },
          { title: "callee", cell: (call) => el("span", { class: "mono" }, call.callee || "") },
          { title: "state", cell: (call) => stateBadge(call.state) },
          { title: "last news", cell: (call) => time(call.lastSeen) },
          { title: "session", cell: (call) => el("span", { class: "mono" }, call.sessionId) },
          { title: "", cell: (call) => endControl(call) },
        ],
        answer.calls.map((call) => Object.assign(call, { attrs: { dataset: { session: call.sessionId } } })),
        app ? `No live call of ${app}.` : "No live calls.",
      ),
    );
  } catch (err) {
    failed("Loading the live calls")(err);
  }
}

function endControl(call) {
  const box = el("span", { class: "end-control" });
  const ask = el("button", { type: "button", class: "end danger" }, "End call");
  ask.addEventListener("click", () => {
    box.replaceChildren(
      "End it? ",
      el("button", { type: "button", class: "confirm-end danger", onclick: (event) => endCall(event.target, call) }, "Yes, end it"),
      " ",
      el("button", { type: "button", class: "quiet", onclick: () => box.replaceChildren(ask) }, "Cancel"),
    );
  });
  box.append(ask);
  return box;
}

async function endCall(button, call) {
  button.disabled = true;
  try {
    const answer = await api("POST", `/calls/${encodeURIComponent(call.sessionId)}/end`);
    const switchSaid = {
      stopped: "the switch was asked to stop it",
      not_configured: "no switch_control_url, so the switch was not asked",
      refused: `the switch did not stop it (${answer.switchError || "no reason"})`,
    }[answer.switch];
    await loadCalls();
    flash(`Call ${call.sessionId} ended: disconnect ${answer.stateCode} and its CDR; ${switchSaid}.`);
  } catch (err) {
    button.disabled = false;
    failed(`Ending call ${call.sessionId}`)(err);
  }
}

const LOADERS = { tones: loadTones, scripts: loadScripts, pushes: loadPushes, calls: loadCalls };

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut());
  $("scripts-reload").addEventListener("click", reloadScripts);
  $("scripts-rollback").addEventListener("click", rollbackScripts);
  $("calls-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadCalls();
  });
  window.addEventListener("hashchange", show);
  show();
});
