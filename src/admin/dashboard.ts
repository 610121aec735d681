// GET /admin: the operator dashboard, one self-contained HTML page. Inline CSS and JS only (no external
// scripts, fonts, images or CDNs), under a strict Content-Security-Policy: the inline code runs only with
// this response's nonce, the page may fetch only its own origin, and Trusted Types forbid every
// string-to-HTML sink, so data (trip reasons, event statuses from Twilio payloads) is only ever text.
//
// The page holds no data and no secret: the operator pastes the admin token, which is kept in
// sessionStorage only (gone when the tab closes) and sent as a bearer token on each /admin/* API call.
// Mutations ask for a TOTP code first when the API says one is required (`totpRequired` in its answers,
// or a 403 `totp-…`), so a code-less attempt never counts against the failure lockout.

/** CSP nonces: 128 random bits (CSP3 §7.1 asks for at least 128), fresh per response. */
const NONCE_BYTES = 16;

function nonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  return btoa(String.fromCharCode(...bytes));
}

export function contentSecurityPolicy(n: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${n}'`,
    `style-src 'nonce-${n}'`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ].join("; ");
}

export function dashboardResponse(headOnly = false): Response {
  const n = nonce();
  return new Response(headOnly ? null : dashboardHtml(n), {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": contentSecurityPolicy(n),
      "cache-control": "no-store",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "cross-origin-opener-policy": "same-origin",
    },
  });
}

export function dashboardHtml(n: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>twilio-edge-guard · operator console</title>
<style nonce="${n}">${CSS}</style>
</head>
<body>
<header>
  <h1>twilio-edge-guard <span class="sub">operator console</span></h1>
  <div class="status"><span id="status">signed out</span> <button id="signout-button" type="button" hidden>Sign out</button></div>
</header>
<p id="message" role="status" hidden></p>
<main>
  <section id="signin" hidden>
    <h2>Sign in</h2>
    <form id="signin-form" autocomplete="off">
      <label for="token-input">Admin token (ADMIN_TOKEN)</label>
      <input id="token-input" type="password" autocomplete="off" spellcheck="false" required>
      <button id="signin-button" type="submit">Sign in</button>
      <p class="hint">The token stays in this tab's sessionStorage and is sent only to this origin.</p>
    </form>
  </section>
  <section id="list" hidden>
    <h2>Accounts <span id="total" class="sub"></span></h2>
    <table id="accounts">
      <thead><tr><th>Account</th><th>Breaker</th><th>Action</th><th>Spend against limits (current UTC windows)</th></tr></thead>
      <tbody id="accounts-body"></tbody>
    </table>
    <p id="empty" class="hint" hidden>No accounts yet: the guard lists an account once it has seen one of its webhooks.</p>
    <div class="pager"><button id="prev-button" type="button">← Previous</button> <span id="page-label"></span> <button id="next-button" type="button">Next →</button></div>
  </section>
  <section id="account" hidden>
    <p><a href="#/" id="back-link">← all accounts</a></p>
    <h2 id="account-sid"></h2>
    <div class="summary">
      <div>Breaker: <span id="account-state" class="badge"></span> <span id="account-suspension"></span></div>
      <div id="account-reason"></div>
      <div>Policy: <span id="account-policy"></span></div>
    </div>
    <div class="actions">
      <input id="trip-reason" type="text" maxlength="200" placeholder="reason for tripping (optional)">
      <button id="trip-button" type="button" class="danger">Trip now</button>
      <button id="reset-button" type="button">Reset breaker</button>
      <button id="triggers-button" type="button">Sync Twilio usage triggers</button>
    </div>
    <div id="account-windows" class="windows"></div>
    <h3>Trips</h3>
    <table><thead><tr><th>Opened</th><th>Reason</th><th>Detail</th><th>Closed</th></tr></thead><tbody id="trips-body"></tbody></table>
    <h3>Audit trail</h3>
    <table><thead><tr><th>When</th><th>Call</th><th>Token</th><th>TOTP</th><th>Outcome</th><th>Before → after</th></tr></thead><tbody id="audit-body"></tbody></table>
    <h3>Breaker history</h3>
    <table><thead><tr><th>When</th><th>Kind</th><th>Outcome</th><th>Detail</th></tr></thead><tbody id="history-body"></tbody></table>
    <h3>Recent events</h3>
    <table><thead><tr><th>When</th><th>Kind</th><th>SID</th><th>Status</th><th>USD</th><th>Counted</th></tr></thead><tbody id="events-body"></tbody></table>
  </section>
</main>
<dialog id="totp-dialog">
  <form id="totp-form" autocomplete="off">
    <h3 id="totp-title">TOTP code required</h3>
    <p id="totp-hint" class="hint">Enter the current 6-digit code from your authenticator (ADMIN_TOTP_SECRET).</p>
    <input id="totp-code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required>
    <div class="actions"><button id="totp-submit" type="submit">Confirm</button> <button id="totp-cancel" type="button">Cancel</button></div>
  </form>
</dialog>
<script nonce="${n}">${JS}</script>
</body>
</html>
`;
}

const CSS = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #bf8700; --muted: #6e7781; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; }
header { display: flex; justify-content: space-between; align-items: center; padding: 10px 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; } h2 { font-size: 16px; } h3 { font-size: 14px; margin-top: 22px; }
.sub, .hint { color: var(--muted); font-weight: normal; font-size: 13px; }
main { padding: 0 20px 40px; }
#message { margin: 10px 20px; padding: 8px 12px; border-radius: 6px; background: #fff8c5; color: #3b2300; }
#message.error { background: #ffebe9; color: #82071e; }
table { border-collapse: collapse; width: 100%; margin-top: 6px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
.state-open { background: var(--bad); } .state-closed { background: var(--ok); }
.tag { display: inline-block; margin-left: 6px; padding: 0 6px; border: 1px solid var(--line); border-radius: 8px; font-size: 11px; color: var(--muted); }
.bar-row { display: flex; align-items: center; gap: 8px; margin: 2px 0; }
.bar-label { min-width: 220px; font-size: 12px; }
.bar { position: relative; width: 220px; height: 10px; border-radius: 5px; background: #eaeef2; overflow: hidden; }
.fill { height: 100%; background: var(--ok); }
.fill.warn { background: var(--warn); } .fill.over { background: var(--bad); }
.windows { margin-top: 12px; }
.actions { display: flex; gap: 8px; align-items: center; margin: 12px 0; flex-wrap: wrap; }
.actions input[type=text] { min-width: 280px; }
button { font: inherit; padding: 5px 12px; border-radius: 6px; border: 1px solid var(--line); background: #f6f8fa; cursor: pointer; color: #24292f; }
button.danger { border-color: var(--bad); color: var(--bad); }
button:disabled { opacity: .5; cursor: default; }
input { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px; }
#signin-form { display: flex; flex-direction: column; gap: 8px; max-width: 420px; }
dialog { border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; }
dialog input { font-size: 20px; letter-spacing: 4px; width: 9em; }
.pager { margin-top: 10px; }
a { color: #0969da; }
`;

// Plain ES2020, no build step: this string is the page's only script.
const JS = String.raw`
"use strict";
const TOKEN_KEY = "twilio-edge-guard.admin-token";
const REFRESH_MS = 5000;
const PAGE_SIZE = 50;
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let totpRequired = false;
let cursors = [""];
let nextCursor = null;
let refreshTimer = null;
let busy = false;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function time(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function usd(v) {
  return "$" + Number(v).toFixed(Math.abs(v) < 1 && v !== 0 ? 4 : 2);
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
  m.hidden = !text;
}

// A successful refresh clears an error it has outlived, never an action's result.
function clearError() {
  if ($("message").className === "error") say("");
}

function show(section) {
  for (const id of ["signin", "list", "account"]) $(id).hidden = id !== section;
  $("signout-button").hidden = section === "signin";
}

function signOut(reason) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(refreshTimer);
  $("status").textContent = "signed out";
  show("signin");
  say(reason || "", Boolean(reason));
  $("token-input").focus();
}

async function api(method, path, options) {
  const opts = options || {};
  const headers = { authorization: "Bearer " + token, accept: "application/json" };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (opts.totp) headers["x-guard-totp"] = opts.totp;
  let response;
  try {
    response = await fetch(path, { method, headers, cache: "no-store", credentials: "omit", body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  } catch (error) {
    return { status: 0, data: null };
  }
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  return { status: response.status, data, retryAfter: response.headers.get("retry-after") };
}

// True when the answer can be used; otherwise says why (and signs out on 401).
function usable(r) {
  if (r.status >= 200 && r.status < 300) return true;
  if (r.status === 401) { signOut("The admin token was refused."); return false; }
  if (r.status === 429) { say("Too many failed attempts: admin calls are locked for " + (r.retryAfter || "a few") + " s.", true); return false; }
  if (r.status === 0) { say("The guard cannot be reached; retrying.", true); return false; }
  say((r.data && (r.data.message || r.data.error)) || ("HTTP " + r.status), true);
  return false;
}

function bar(w, limit) {
  const isUsd = limit.usd !== undefined;
  const used = Math.max(0, Number(limit.used) || 0);
  const label = w.window + ": " + (isUsd ? usd(w.usd) + " / " + usd(limit.usd) : w.events + " / " + limit.events + " events") + " (" + Math.round(used * 100) + "%)";
  const fill = el("div", { class: "fill" + (used > 1 ? " over" : used >= 0.8 ? " warn" : "") });
  fill.style.width = Math.min(100, used * 100) + "%";
  return el("div", { class: "bar-row", "data-window": w.window }, el("span", { class: "bar-label" }, label), el("div", { class: "bar", title: label }, fill));
}

function bars(windows) {
  const out = [];
  for (const w of windows || []) for (const limit of w.limits || []) out.push(bar(w, limit));
  return out.length ? out : [el("span", { class: "hint" }, "no limits")];
}

function stateBadge(breaker) {
  return el("span", { class: "badge state-" + breaker.state, "data-field": "state" }, breaker.state);
}

function suspensionText(breaker) {
  if (breaker.state !== "open") return "";
  return "suspension " + breaker.suspension + (breaker.retrying ? " (retrying)" : "");
}

async function showList() {
  const after = cursors[cursors.length - 1];
  const r = await api("GET", "/admin/accounts?limit=" + PAGE_SIZE + (after ? "&after=" + encodeURIComponent(after) : ""));
  if (!usable(r)) return;
  clearError();
  totpRequired = Boolean(r.data.totpRequired);
  nextCursor = r.data.next;
  $("total").textContent = r.data.total + " seen";
  const rows = r.data.accounts.map((a) => {
    const link = el("a", { href: "#/account/" + a.sid, class: "mono" }, a.sid);
    const who = el("td", {}, link, a.isParent ? el("span", { class: "tag" }, "parent") : null);
    if (a.error) return el("tr", { "data-sid": a.sid }, who, el("td", { colSpan: 3 }, a.error));
    return el("tr", { "data-sid": a.sid }, who,
      el("td", {}, stateBadge(a.breaker), " ", el("span", { class: "hint" }, suspensionText(a.breaker))),
      el("td", {}, a.action + (a.policySource === "account" ? " (own policy)" : "")),
      el("td", {}, ...bars(a.windows)));
  });
  $("accounts-body").replaceChildren(...rows);
  $("empty").hidden = rows.length > 0;
  $("prev-button").disabled = cursors.length <= 1;
  $("next-button").disabled = !nextCursor;
  $("page-label").textContent = "page " + cursors.length;
  show("list");
}

function cells(values) {
  return values.map((v) => (v instanceof Node ? el("td", {}, v) : el("td", {}, v === null || v === undefined ? "" : String(v))));
}

function compact(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "object") return String(value);
  if (value.state) return value.state + (value.state === "open" ? "/" + value.suspension : "") + (value.reactivation ? ", reactivation " + value.reactivation : "");
  if (value.policySource) return value.policySource + " policy: " + (value.policy.limits || []).map((l) => l.window + " " + (l.usd !== undefined ? usd(l.usd) : l.events + " events")).join(", ") + ", " + value.policy.action;
  if (value.created) return value.created.length + " created, " + value.kept.length + " kept, " + value.deleted.length + " deleted";
  return JSON.stringify(value).slice(0, 120);
}

let currentSid = null;

async function showAccount(sid) {
  const r = await api("GET", "/admin/accounts/" + encodeURIComponent(sid));
  if (!usable(r)) return;
  clearError();
  totpRequired = Boolean(r.data.totpRequired);
  currentSid = sid;
  const a = r.data.account;
  $("account-sid").textContent = a.sid + (a.isParent ? " (parent)" : "");
  const state = $("account-state");
  state.textContent = a.breaker.state;
  state.className = "badge state-" + a.breaker.state;
  $("account-suspension").textContent = suspensionText(a.breaker);
  $("account-reason").textContent = a.breaker.state === "open" ? "Opened " + time(a.breaker.openedAt) + ": " + (a.breaker.reason || "") : "";
  $("account-policy").textContent = compact({ policySource: a.policySource, policy: a.policy });
  $("account-windows").replaceChildren(...bars(a.windows));
  $("trips-body").replaceChildren(...a.trips.map((t) => el("tr", {}, ...cells([time(t.openedAt), t.reason, t.detail, t.closedAt ? time(t.closedAt) : "open"]))));
  $("audit-body").replaceChildren(...r.data.audit.map((e) => el("tr", { "data-action": e.action }, ...cells([time(e.atMs), e.call, el("span", { class: "mono" }, e.tokenFingerprint), e.totp ? "yes" : "no", e.outcome + (e.detail ? ": " + e.detail : ""), compact(e.before) + " → " + compact(e.after)]))));
  $("history-body").replaceChildren(...a.history.map((h) => el("tr", {}, ...cells([time(h.at), h.kind, h.outcome, h.detail]))));
  $("events-body").replaceChildren(...a.recentEvents.map((e) => el("tr", {}, ...cells([time(e.at), e.kind, el("span", { class: "mono" }, e.sid), e.status, usd(e.usd), e.duplicate ? "duplicate" : e.counted ? "yes" : "no"]))));
  show("account");
}

function askTotp(label, problem) {
  const dialog = $("totp-dialog");
  $("totp-title").textContent = "TOTP code required: " + label;
  $("totp-hint").textContent = problem || "Enter the current 6-digit code from your authenticator (ADMIN_TOTP_SECRET).";
  $("totp-code").value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      $("totp-form").onsubmit = null;
      $("totp-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    $("totp-form").onsubmit = (event) => { event.preventDefault(); done($("totp-code").value.trim()); };
    $("totp-cancel").onclick = () => done(null);
    dialog.onclose = () => done(null);
    dialog.showModal();
    $("totp-code").focus();
  });
}

async function mutate(method, path, body, label) {
  busy = true;
  try {
    let code;
    if (totpRequired) {
      code = await askTotp(label);
      if (code === null) return null;
    }
    for (;;) {
      const r = await api(method, path, { body, totp: code });
      if (r.status === 403 && r.data && String(r.data.error).startsWith("totp-")) {
        totpRequired = true;
        code = await askTotp(label, r.data.message);
        if (code === null) return null;
        continue;
      }
      return usable(r) || r.status === 502 ? r : null;
    }
  } finally {
    busy = false;
  }
}

async function trip() {
  const reason = $("trip-reason").value.trim();
  const r = await mutate("POST", "/admin/accounts/" + currentSid + "/trip", reason ? { reason } : undefined, "trip " + currentSid);
  if (r) { $("trip-reason").value = ""; say(r.data.tripped ? "Breaker opened." : "The breaker was already open."); }
  await route();
}

async function reset() {
  const r = await mutate("POST", "/admin/accounts/" + currentSid + "/reset", undefined, "reset " + currentSid);
  if (r) say("Breaker closed; reactivation: " + r.data.reactivation + ".");
  await route();
}

async function syncTriggers() {
  const r = await mutate("POST", "/admin/accounts/" + currentSid + "/usage-triggers", undefined, "usage triggers " + currentSid);
  if (r && r.status === 502) say("Twilio refused: " + r.data.message, true);
  else if (r) say("Usage triggers: " + r.data.created.length + " created, " + r.data.kept.length + " kept, " + r.data.deleted.length + " deleted, " + r.data.skipped.length + " skipped.");
  await route();
}

async function route() {
  clearTimeout(refreshTimer);
  if (!token) { signOut(); return; }
  const m = /^#\/account\/(AC[0-9a-f]{32})$/.exec(location.hash);
  if (m) await showAccount(m[1]);
  else await showList();
  if (token) {
    $("status").textContent = "signed in · refreshed " + new Date().toLocaleTimeString();
    refreshTimer = setTimeout(tick, REFRESH_MS);
  }
}

async function tick() {
  // Never re-render under an open TOTP prompt or a call in flight; try again at the next tick.
  if (busy || $("totp-dialog").open) { refreshTimer = setTimeout(tick, REFRESH_MS); return; }
  await route();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token-input").value.trim();
  $("token-input").value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  cursors = [""];
  route();
});
$("signout-button").addEventListener("click", () => signOut());
$("prev-button").addEventListener("click", () => { if (cursors.length > 1) { cursors.pop(); route(); } });
$("next-button").addEventListener("click", () => { if (nextCursor) { cursors.push(nextCursor); route(); } });
$("trip-button").addEventListener("click", trip);
$("reset-button").addEventListener("click", reset);
$("triggers-button").addEventListener("click", syncTriggers);
window.addEventListener("hashchange", () => { say(""); route(); });
route();
`;
