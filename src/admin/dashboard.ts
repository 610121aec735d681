// GET /admin: the operator dashboard, one self-contained HTML page. Inline CSS and JS only (no external
// scripts, fonts, images or CDNs), under a strict Content-Security-Policy: the inline code runs only with
// this response's nonce, the page may fetch only its own origin, and Trusted Types forbid every
// string-to-HTML sink, so data (trip reasons, event statuses from Twilio payloads) is only ever text.
//
// The page holds no data and no secret: the operator pastes the admin token, which is kept in
// sessionStorage only (gone when the tab closes) and sent as a bearer token on each /admin/* API call.
// Mutations need a second factor when the API says so (`totpRequired`): the page asks for one code,
// trades it for a ten-minute elevation (POST /admin/elevate) kept in memory only, and sends that with
// each mutation until it runs out. Without TOTP, each mutation asks for a confirmation instead.
//
// Views (the URL's hash): #/ accounts (overview, search, sort, filter), #/account/<SID> (state, charts
// of spend and events per hour and per day against the limits, sends by destination country, trips,
// warnings, audit, history, events),
// #/rejections (refused requests). Every view shows only what it loaded: changing the hash clears the
// view at once, an answer that arrives for a view no longer shown is dropped, and every button names the
// account it acts on.

import { ACCOUNT_SID } from "../twilio/sids.ts";

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
  <nav id="nav" hidden><a href="#/" id="nav-accounts">Accounts</a> <a href="#/rejections" id="nav-rejections">Refused requests</a></nav>
  <div class="status"><span id="status">signed out</span> <span id="elevation-status" class="tag" hidden></span> <button id="signout-button" type="button" hidden>Sign out</button></div>
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
    <div id="overview" class="cards">
      <div class="card"><div class="card-label">Spend today (UTC)</div><div id="ov-spend" class="card-value"></div><div id="ov-events" class="hint"></div></div>
      <div class="card"><div class="card-label">Breakers open</div><div id="ov-open" class="card-value"></div></div>
      <div class="card"><div class="card-label">Warned (past warnAt)</div><div id="ov-warned" class="card-value"></div></div>
      <div class="card"><div class="card-label">Accounts seen</div><div id="ov-accounts" class="card-value"></div></div>
      <div class="card wide"><div class="card-label">Top spenders today</div><ol id="ov-top"></ol></div>
    </div>
    <h2>Accounts <span id="total" class="sub"></span></h2>
    <form id="filters" class="filters" autocomplete="off">
      <input id="search" type="search" placeholder="Search SID or name" maxlength="64" aria-label="Search by SID or friendly name">
      <label>Sort <select id="sort"><option value="spend">spend today</option><option value="state">state</option><option value="activity">last activity</option><option value="sid">SID</option></select></label>
      <label>Show <select id="filter"><option value="all">all</option><option value="open">open</option><option value="warned">warned</option></select></label>
    </form>
    <div class="scroll">
      <table id="accounts">
        <thead><tr><th>Account</th><th>Breaker</th><th>Spend today</th><th>Events today</th><th>Most-used limit</th><th>Last activity</th></tr></thead>
        <tbody id="accounts-body"></tbody>
      </table>
    </div>
    <p id="empty" class="hint" hidden>No accounts match.</p>
    <div class="pager"><button id="prev-button" type="button">← Previous</button> <span id="page-label"></span> <button id="next-button" type="button">Next →</button></div>
  </section>
  <section id="account" hidden>
    <p><a href="#/" id="back-link">← all accounts</a></p>
    <h2><span id="account-name"></span> <span id="account-sid" class="mono"></span></h2>
    <div class="summary">
      <div>Breaker: <span id="account-state" class="badge"></span> <span id="account-suspension"></span></div>
      <div id="account-reason"></div>
      <div>Policy: <span id="account-policy"></span></div>
      <div id="account-warnings"></div>
    </div>
    <div class="actions">
      <input id="trip-reason" type="text" maxlength="200" placeholder="reason for tripping (optional)" aria-label="Reason for tripping">
      <button id="trip-button" type="button" class="danger">Trip now</button>
      <button id="reset-button" type="button">Reset breaker</button>
      <button id="triggers-button" type="button">Sync Twilio usage triggers</button>
    </div>
    <h3>Current windows <span class="sub">spend (or events) against each limit</span></h3>
    <div id="account-windows" class="windows"></div>
    <h3>Usage <span class="sub">UTC; bars: spend and events; dashed line: the limit; red: blocked events; ▼ trips</span></h3>
    <div class="tabs"><button id="by-hour" type="button" class="tab" aria-pressed="true">Per hour · 48 h</button> <button id="by-day" type="button" class="tab" aria-pressed="false">Per day · 90 days</button></div>
    <div id="charts" class="charts"></div>
    <h3 id="countries-title">Sends by destination country <span class="sub">through the egress gate, same range; red: refused by the gate; <span class="tag new">new</span> first send to it in the last 24 h</span></h3>
    <div id="countries"></div>
    <h3>Trips</h3>
    <div class="scroll"><table><thead><tr><th>Opened</th><th>Reason</th><th>Detail</th><th>Closed</th></tr></thead><tbody id="trips-body"></tbody></table></div>
    <h3>Audit trail</h3>
    <div class="scroll"><table><thead><tr><th>When</th><th>Call</th><th>Token</th><th>2nd factor</th><th>Outcome</th><th>Before → after</th></tr></thead><tbody id="audit-body"></tbody></table></div>
    <h3>Breaker history</h3>
    <div class="scroll"><table><thead><tr><th>When</th><th>Kind</th><th>Outcome</th><th>Detail</th></tr></thead><tbody id="history-body"></tbody></table></div>
    <h3>Recent events</h3>
    <div class="scroll"><table><thead><tr><th>When</th><th>Kind</th><th>SID</th><th>Status</th><th>USD</th><th>Counted</th><th>Answer</th></tr></thead><tbody id="events-body"></tbody></table></div>
  </section>
  <section id="missing" hidden>
    <p><a href="#/">← all accounts</a></p>
    <h2>Account not found</h2>
    <p id="missing-text"></p>
  </section>
  <section id="rejections" hidden>
    <h2>Refused requests <span id="rejections-total" class="sub"></span></h2>
    <p class="hint">The latest requests the guard refused: no bodies, query strings or credentials are kept. Many from one address with a bad signature look like an attack; one route failing every time looks like a misconfigured URL or token.</p>
    <div class="scroll"><table><thead><tr><th>When</th><th>Route</th><th>Path</th><th>Status</th><th>Reason</th><th>Client address</th><th>Account claimed</th></tr></thead><tbody id="rejections-body"></tbody></table></div>
    <p id="rejections-empty" class="hint" hidden>Nothing refused yet.</p>
  </section>
</main>
<dialog id="totp-dialog">
  <form id="totp-form" autocomplete="off">
    <h3 id="totp-title">TOTP code required</h3>
    <p id="totp-hint" class="hint"></p>
    <input id="totp-code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required aria-label="TOTP code">
    <div class="actions"><button id="totp-submit" type="submit">Confirm</button> <button id="totp-cancel" type="button">Cancel</button></div>
  </form>
</dialog>
<dialog id="confirm-dialog">
  <form id="confirm-form">
    <h3 id="confirm-title">Confirm</h3>
    <p id="confirm-text" class="hint"></p>
    <div class="actions"><button id="confirm-ok" type="submit" class="danger">Confirm</button> <button id="confirm-cancel" type="button">Cancel</button></div>
  </form>
</dialog>
<script nonce="${n}">${JS}</script>
</body>
</html>
`;
}

const CSS = `
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1f2328; --panel: #f6f8fa; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700;
  --muted: #656d76; --line: #d0d7de; --track: #eaeef2; --link: #0969da; --info-bg: #ddf4ff; --info-fg: #0a3069;
  --ok-bg: #dafbe1; --ok-fg: #116329; --warn-bg: #fff8c5; --warn-fg: #4d2d00; --bad-bg: #ffebe9; --bad-fg: #82071e;
  --bar-usd: #0969da; --bar-events: #8250df; --blocked: #cf222e; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --panel: #161b22; --ok: #3fb950; --bad: #f85149; --warn: #d29922; --muted: #8d96a0;
    --line: #30363d; --track: #21262d; --link: #4493f8; --info-bg: #0c2d6b; --info-fg: #cae8ff; --ok-bg: #04260f; --ok-fg: #aff5b4;
    --warn-bg: #3b2300; --warn-fg: #f8e3a1; --bad-bg: #490202; --bad-fg: #ffdcd7; --bar-usd: #4493f8; --bar-events: #ab7df8; --blocked: #f85149; }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; gap: 8px 16px; justify-content: space-between; align-items: center; padding: 10px 20px; border-bottom: 1px solid var(--line); }
header nav a { margin-right: 12px; }
h1 { font-size: 18px; margin: 0; } h2 { font-size: 16px; overflow-wrap: anywhere; } h3 { font-size: 14px; margin-top: 22px; }
.sub, .hint { color: var(--muted); font-weight: normal; font-size: 13px; }
main { padding: 0 20px 40px; max-width: 1400px; }
#message { margin: 10px 20px; padding: 8px 12px; border-radius: 6px; background: var(--info-bg); color: var(--info-fg); }
#message.ok { background: var(--ok-bg); color: var(--ok-fg); }
#message.warn { background: var(--warn-bg); color: var(--warn-fg); }
#message.error { background: var(--bad-bg); color: var(--bad-fg); }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; margin-top: 6px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; overflow-wrap: anywhere; }
td.num { text-align: right; white-space: nowrap; }
td.when { white-space: nowrap; }
td .mono, td.mono { overflow-wrap: normal; white-space: nowrap; }
td.empty { color: var(--muted); font-style: italic; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
.state-open { background: var(--bad); } .state-closed { background: var(--ok); } .state-warned { background: var(--warn); }
.tag { display: inline-block; margin-left: 6px; padding: 0 6px; border: 1px solid var(--line); border-radius: 8px; font-size: 11px; color: var(--muted); }
.tag.blocked { border-color: var(--bad); color: var(--bad); } .tag.settled { border-color: var(--ok); color: var(--ok); }
.bar-row { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; margin: 2px 0; }
.bar-label { min-width: 220px; font-size: 12px; }
.bar { position: relative; width: 220px; max-width: 100%; height: 10px; border-radius: 5px; background: var(--track); overflow: hidden; }
.fill { height: 100%; background: var(--ok); }
.fill.warn { background: var(--warn); } .fill.over { background: var(--bad); }
.windows { margin-top: 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 10px; margin-top: 14px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: var(--panel); }
.card.wide { grid-column: span 2; } @media (max-width: 520px) { .card.wide { grid-column: 1 / -1; } }
.card-label { font-size: 12px; color: var(--muted); } .card-value { font-size: 22px; font-weight: 600; }
.card ol { margin: 4px 0 0; padding-left: 20px; font-size: 12px; }
.filters { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: center; margin: 6px 0; }
.filters input[type=search] { flex: 1 1 220px; max-width: 360px; }
.actions { display: flex; gap: 8px; align-items: center; margin: 12px 0; flex-wrap: wrap; }
.actions input[type=text] { flex: 1 1 240px; max-width: 360px; min-width: 0; }
button { font: inherit; padding: 5px 12px; border-radius: 6px; border: 1px solid var(--line); background: var(--panel); cursor: pointer; color: var(--fg); }
button.danger { border-color: var(--bad); color: var(--bad); }
button:disabled { opacity: .45; cursor: not-allowed; }
.tab[aria-pressed=true] { border-color: var(--link); color: var(--link); font-weight: 600; }
input, select { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
#signin-form { display: flex; flex-direction: column; gap: 8px; max-width: 420px; }
dialog { border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; background: var(--bg); color: var(--fg); max-width: calc(100vw - 32px); }
dialog input { font-size: 20px; letter-spacing: 4px; width: 9em; }
.pager { margin-top: 10px; }
a { color: var(--link); }
.charts { display: grid; grid-template-columns: 1fr; gap: 14px; }
@media (min-width: 1000px) { .charts { grid-template-columns: 1fr 1fr; } }
.chart { border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; background: var(--panel); min-width: 0; }
.chart-title { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
.chart svg { width: 100%; height: auto; display: block; }
.chart .axis { fill: var(--muted); font-size: 10px; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .usd { fill: var(--bar-usd); } .chart .events { fill: var(--bar-events); } .chart .blocked { fill: var(--blocked); }
.chart .limit { stroke: var(--bad); stroke-width: 1.5; stroke-dasharray: 5 3; fill: none; }
.chart .trip { fill: var(--bad); }
.legend { font-size: 12px; color: var(--muted); margin-top: 2px; }
.tag.new { border-color: var(--warn); color: var(--warn); font-weight: 600; }
#countries-table { max-width: 760px; }
#countries-table th.num { text-align: right; }
#countries-table .cc { display: inline-block; min-width: 2.2em; font-weight: 600; }
#countries-table .cname { color: var(--muted); font-size: 12px; }
#countries-table tr.new-country td:first-child { box-shadow: inset 3px 0 0 var(--warn); }
#countries-table td.refused { color: var(--bad); font-weight: 600; }
.share { display: flex; width: 100%; max-width: 260px; height: 6px; margin-top: 4px; border-radius: 3px; background: var(--track); overflow: hidden; }
.share .sent { background: var(--bar-usd); } .share .refused { background: var(--blocked); }
@media (max-width: 600px) {
  header { padding: 8px 12px; } main { padding: 0 12px 32px; } #message { margin: 8px 12px; }
  .bar-label { min-width: 0; width: 100%; }
  th, td { padding: 5px 6px; }
  .chart .axis { font-size: 16px; }
  #countries-table .opt { display: none; }
  #countries-table .cname { display: block; }
  /* The account list becomes one card per account: label and value, no sideways scrolling. */
  #accounts thead { display: none; }
  #accounts tr { display: block; padding: 8px 0; border-bottom: 1px solid var(--line); }
  #accounts td { display: flex; gap: 8px; align-items: baseline; border: 0; padding: 2px 0; text-align: left; white-space: normal; }
  #accounts td::before { content: attr(data-label); flex: 0 0 96px; font-size: 12px; color: var(--muted); }
  #accounts td a { overflow-wrap: anywhere; }
}
`;

// Plain ES2020, no build step: this string is the page's only script. (No template literals in it:
// it is itself inside one.)
const JS = String.raw`
"use strict";
const TOKEN_KEY = "twilio-edge-guard.admin-token";
const REFRESH_MS = 5000;
const PAGE_SIZE = 50;
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let totpRequired = false;
// The elevation lives in memory only: a reload asks for a code again.
let elevation = null;
let offset = 0;
let refreshTimer = null;
let busy = false;
// Bumped on every navigation: an answer for an older view is dropped.
let viewSeq = 0;
// The account the page shows and its buttons act on: set only once that account's data is on screen.
let currentAccount = null;
let usageBy = "hour";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  for (const child of children) if (child !== null && child !== undefined) node.append(typeof child === "string" ? document.createTextNode(child) : child);
  return node;
}

function time(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19) + " UTC";
}

function usd(v) {
  const n = Number(v) || 0;
  return "$" + n.toFixed(Math.abs(n) < 1 && n !== 0 ? 4 : 2);
}

function shortSid(sid) {
  return sid.slice(0, 6) + "…" + sid.slice(-4);
}

// kind: "ok" (green), "warn" (yellow), "error" (red), or "" (neutral information).
function say(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = kind === true ? "error" : kind || "";
  m.hidden = !text;
}

// A successful refresh clears an error it has outlived, never an action's result.
function clearError() {
  if ($("message").className === "error") say("");
}

const SECTIONS = ["signin", "list", "account", "missing", "rejections"];
function show(section) {
  for (const id of SECTIONS) $(id).hidden = id !== section;
  $("signout-button").hidden = section === "signin";
  $("nav").hidden = section === "signin";
}

function signOut(reason) {
  token = null;
  elevation = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(refreshTimer);
  clearAccount();
  $("status").textContent = "signed out";
  showElevation();
  show("signin");
  say(reason || "", reason ? "error" : "");
  $("token-input").focus();
}

async function api(method, path, options) {
  const opts = options || {};
  const headers = { authorization: "Bearer " + token, accept: "application/json" };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (opts.totp) headers["x-guard-totp"] = opts.totp;
  if (opts.elevation) headers["x-guard-elevation"] = opts.elevation;
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
  if (r.status === 429) { say("Too many failed attempts from this address: admin calls are locked for " + (r.retryAfter || "a few") + " s.", "error"); return false; }
  if (r.status === 0) { say("The guard cannot be reached; retrying.", "error"); return false; }
  say((r.data && (r.data.message || r.data.error)) || ("HTTP " + r.status), "error");
  return false;
}

// warnAt: the policy's warning ratio (the bar turns yellow there, red above the limit).
function bar(w, limit, warnAt) {
  const warnFrom = typeof warnAt === "number" ? warnAt : 0.8;
  const isUsd = limit.usd !== undefined;
  const used = Math.max(0, Number(limit.used) || 0);
  const label = w.window + ": " + (isUsd ? usd(w.usd) + " of " + usd(limit.usd) : w.events + " of " + limit.events + " events") + " (" + Math.round(used * 100) + "%)";
  const fill = el("div", { class: "fill" + (used > 1 ? " over" : used >= warnFrom ? " warn" : "") });
  fill.style.width = Math.min(100, used * 100) + "%";
  return el("div", { class: "bar-row", "data-window": w.window }, el("span", { class: "bar-label" }, label), el("div", { class: "bar", title: label }, fill));
}

function bars(windows, warnAt) {
  const out = [];
  for (const w of windows || []) for (const limit of w.limits || []) out.push(bar(w, limit, warnAt));
  return out.length ? out : [el("span", { class: "hint" }, "no limits")];
}

// What the breaker does, in words an on-call engineer reads at 3 am.
function suspensionText(breaker) {
  if (!breaker || breaker.state !== "open") return "";
  switch (breaker.suspension) {
    case "done": return "Twilio account suspended";
    case "pending": return "suspending the Twilio account…";
    case "failed": return "suspension failing at Twilio, retrying" + (breaker.retrying ? "" : "");
    default: return "blocked at the edge only (not suspended)";
  }
}

function stateBadge(breaker, warned) {
  if (!breaker) return el("span", { class: "hint", "data-field": "state" }, "not seen since upgrade");
  const state = breaker.state === "closed" && warned ? "warned" : breaker.state;
  return el("span", { class: "badge state-" + state, "data-field": "state" }, breaker.state === "closed" && warned ? "closed · warned" : breaker.state);
}

function listQuery() {
  const q = $("search").value.trim();
  return "/admin/accounts?limit=" + PAGE_SIZE + "&offset=" + offset + "&sort=" + $("sort").value + "&filter=" + $("filter").value + (q ? "&q=" + encodeURIComponent(q) : "");
}

async function showList(seq) {
  const [r, o] = await Promise.all([api("GET", listQuery()), api("GET", "/admin/overview")]);
  if (seq !== viewSeq) return;
  if (!usable(r) || !usable(o)) return;
  clearError();
  totpRequired = Boolean(r.data.totpRequired);
  const ov = o.data;
  $("ov-spend").textContent = usd(ov.spendTodayUsd);
  $("ov-events").textContent = ov.eventsToday + " events · " + ov.day;
  $("ov-open").textContent = String(ov.open);
  $("ov-warned").textContent = String(ov.warned);
  $("ov-accounts").textContent = String(ov.accounts);
  $("ov-top").replaceChildren(...(ov.topSpenders.length ? ov.topSpenders.map((t) => el("li", {}, el("a", { href: "#/account/" + t.sid, class: "mono" }, t.friendlyName || shortSid(t.sid)), " " + usd(t.spendTodayUsd) + (t.state === "open" ? " · open" : ""))) : [el("li", { class: "hint" }, "no spend today")]));
  $("total").textContent = r.data.total + " matching";
  const rows = r.data.accounts.map((a) => {
    const link = el("a", { href: "#/account/" + a.sid }, a.friendlyName || a.sid);
    const who = el("td", { "data-label": "Account" }, link, a.friendlyName ? el("div", { class: "mono hint" }, a.sid) : null, a.isParent ? el("span", { class: "tag" }, "parent") : null);
    const top = (a.windows || []).flatMap((w) => (w.limits || []).map((l) => ({ w, l }))).sort((x, y) => y.l.used - x.l.used)[0];
    return el("tr", { "data-sid": a.sid }, who,
      el("td", { "data-label": "Breaker" }, stateBadge(a.breaker, a.warned), " ", el("span", { class: "hint" }, suspensionText(a.breaker))),
      el("td", { class: "num", "data-label": "Spend today" }, usd(a.spendTodayUsd)),
      el("td", { class: "num", "data-label": "Events today" }, String(a.eventsToday)),
      el("td", { "data-label": "Most-used" }, top ? bar(top.w, top.l, a.warned ? Math.min(0.8, top.l.used) : 0.8) : el("span", { class: "hint" }, "no limits")),
      el("td", { class: "when", "data-label": "Last activity" }, a.lastActivityAt ? time(a.lastActivityAt) : el("span", { class: "hint" }, "none recorded")));
  });
  $("accounts-body").replaceChildren(...rows);
  $("empty").hidden = rows.length > 0;
  $("prev-button").disabled = offset === 0;
  $("next-button").disabled = r.data.nextOffset === null;
  $("page-label").textContent = r.data.total ? (offset + 1) + "–" + (offset + rows.length) + " of " + r.data.total : "";
  show("list");
}

// "hour:2026-12-02T14" → "hour of 2026-12-02 14:00 UTC", "day:2026-12-02" → "day of 2026-12-02 (UTC)".
function windowName(id) {
  const [kind, rest] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
  if (kind === "hour") return "hour of " + rest.replace("T", " ") + ":00 UTC";
  if (kind === "minute") return "minute " + rest.replace("T", " ") + " UTC";
  return kind + " of " + rest + " (UTC)";
}

// The first cell of a row is its time: kept on one line.
function cells(values) {
  return values.map((v, i) => {
    const props = i === 0 ? { class: "when" } : {};
    return v instanceof Node ? el("td", props, v) : el("td", props, v === null || v === undefined ? "" : String(v));
  });
}

// A table body, or one row saying there is nothing (an empty table looks broken).
function fill(id, rows, columns, nothing) {
  $(id).replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colSpan: columns }, nothing))]));
}

function compact(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "object") return String(value);
  if (value.state) return value.state + (value.state === "open" ? " (" + suspensionText(value) + ")" : "") + (value.reactivation ? ", reactivation " + value.reactivation : "");
  if (value.policySource) return value.policySource + " policy: " + (value.policy.limits || []).map((l) => l.window + " " + (l.usd !== undefined ? usd(l.usd) : l.events + " events")).join(", ") + ", " + value.policy.action;
  if (value.created) return value.created.length + " created, " + value.kept.length + " kept, " + value.deleted.length + " deleted";
  if (value.expiresAt) return "elevated until " + time(value.expiresAt);
  return JSON.stringify(value).slice(0, 120);
}

// Empties every field of the account view and disables its buttons: nothing of a previous account stays.
function clearAccount() {
  currentAccount = null;
  for (const id of ["account-name", "account-sid", "account-state", "account-suspension", "account-reason", "account-policy", "account-warnings"]) $(id).textContent = "";
  $("account-state").className = "badge";
  for (const id of ["account-windows", "charts", "countries", "trips-body", "audit-body", "history-body", "events-body"]) $(id).replaceChildren();
  for (const id of ["trip-button", "reset-button", "triggers-button"]) { $(id).disabled = true; $(id).removeAttribute("data-sid"); }
  $("trip-button").textContent = "Trip now";
  $("reset-button").textContent = "Reset breaker";
  $("triggers-button").textContent = "Sync Twilio usage triggers";
}

function eventCounted(e) {
  if (e.duplicate) return "duplicate (not counted again)";
  if (e.settled) return el("span", { class: "tag settled" }, "settled the call (" + (e.usd >= 0 ? "+" : "") + usd(e.usd) + ")");
  return e.counted ? "yes" : "not billable";
}

async function showAccount(sid, seq) {
  const [r, u] = await Promise.all([
    api("GET", "/admin/accounts/" + encodeURIComponent(sid)),
    api("GET", "/admin/accounts/" + encodeURIComponent(sid) + "/usage?by=" + usageBy),
  ]);
  if (seq !== viewSeq) return;
  if (r.status === 404 && r.data && r.data.error === "unknown-account") {
    clearAccount();
    $("missing-text").textContent = "The guard has recorded nothing for " + sid + ". Check the SID; an account appears once one of its webhooks has been seen.";
    say("");
    show("missing");
    return;
  }
  if (!usable(r) || !usable(u)) { clearAccount(); show("missing"); $("missing-text").textContent = "Could not load " + sid + "."; return; }
  clearError();
  totpRequired = Boolean(r.data.totpRequired);
  const a = r.data.account;
  currentAccount = { sid: a.sid, state: a.breaker.state };
  $("account-name").textContent = a.friendlyName || (a.isParent ? "Parent account" : "Account");
  $("account-sid").textContent = a.sid;
  const state = $("account-state");
  state.textContent = a.breaker.state;
  state.className = "badge state-" + a.breaker.state;
  $("account-suspension").textContent = suspensionText(a.breaker);
  $("account-reason").textContent = a.breaker.state === "open" ? "Opened " + time(a.breaker.openedAt) + ": " + (a.breaker.reason || "") : "";
  $("account-policy").textContent = compact({ policySource: a.policySource, policy: a.policy });
  const warnings = a.warnings || [];
  $("account-warnings").textContent = warnings.length ? "Warned: " + warnings.slice(0, 3).map((w) => w.limit + " reached " + Math.round(a.policy.warnAt * 100) + "% in the " + windowName(w.windowId) + " (at " + time(w.at) + ")").join("; ") : "";
  const label = shortSid(a.sid);
  const trip = $("trip-button"), reset = $("reset-button"), triggers = $("triggers-button");
  trip.textContent = "Trip " + label;
  reset.textContent = "Reset " + label;
  triggers.textContent = "Sync usage triggers of " + label;
  for (const b of [trip, reset, triggers]) b.setAttribute("data-sid", a.sid);
  trip.disabled = a.breaker.state === "open";
  trip.title = trip.disabled ? "The breaker is already open" : "";
  reset.disabled = a.breaker.state !== "open";
  reset.title = reset.disabled ? "The breaker is closed: nothing to reset" : "";
  triggers.disabled = false;
  $("account-windows").replaceChildren(...bars(a.windows, a.policy.warnAt));
  renderCharts(u.data);
  renderCountries(u.data);
  fill("trips-body", a.trips.map((t) => el("tr", {}, ...cells([time(t.openedAt), t.reason, t.detail, t.closedAt ? time(t.closedAt) : "open"]))), 4, "No trips.");
  fill("audit-body", r.data.audit.map((e) => el("tr", { "data-action": e.action }, ...cells([time(e.atMs), e.call, el("span", { class: "mono" }, e.tokenFingerprint), e.totp ? "yes" : "no", e.outcome + (e.detail ? ": " + e.detail : ""), compact(e.before) + " → " + compact(e.after)]))), 6, "No operator action on this account yet.");
  fill("history-body", a.history.map((h) => el("tr", {}, ...cells([time(h.at), h.kind, h.outcome, h.detail]))), 4, "Nothing yet.");
  fill("events-body", a.recentEvents.map((e) => el("tr", { "data-blocked": e.blocked ? "1" : "0" }, ...cells([time(e.at), e.kind, el("span", { class: "mono" }, e.sid), e.status, usd(e.usd), eventCounted(e), e.blocked ? el("span", { class: "tag blocked" }, "blocked at the edge") : "forwarded"]))), 7, "No events recorded.");
  $("by-hour").setAttribute("aria-pressed", String(usageBy === "hour"));
  $("by-day").setAttribute("aria-pressed", String(usageBy === "day"));
  show("account");
}

// One bar chart: a bar per bucket, the limit as a dashed line, blocked events in red on top, ▼ where a trip opened.
function chart(series, key, title) {
  const W = 640, H = 190, L = 70, R = 8, T = 14, B = 26;
  const points = series.points;
  const limit = key === "usd" ? series.limits.usd : series.limits.events;
  const values = points.map((p) => (key === "usd" ? p.usd : p.events));
  const top = Math.max(limit || 0, ...values, key === "usd" ? 0.01 : 1) * 1.12;
  const bw = (W - L - R) / points.length;
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const fmt = (v) => (key === "usd" ? "$" + v.toFixed(v > 0 && v < 0.1 ? 3 : 2) : String(Math.round(v)));
  const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title, "data-chart": key + "-" + series.by });
  for (const f of [0, 0.5, 1]) {
    const v = top / 1.12 * f;
    root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }), svg("text", { class: "axis", x: L - 4, y: y(v) + 3, "text-anchor": "end" }, fmt(v)));
  }
  points.forEach((p, i) => {
    const v = values[i];
    const x = L + i * bw;
    if (v > 0) {
      const rect = svg("rect", { class: key, x: x + bw * 0.12, width: Math.max(1, bw * 0.76), y: y(v), height: Math.max(1, y(0) - y(v)) });
      rect.append(svg("title", {}, time(p.start) + ": " + fmt(v) + (p.blocked ? ", " + p.blocked + " blocked" : "")));
      root.append(rect);
    }
    if (key === "events" && p.blocked > 0) {
      const b = Math.min(p.blocked, v || p.blocked);
      root.append(svg("rect", { class: "blocked", "data-blocked": p.blocked, x: x + bw * 0.12, width: Math.max(1, bw * 0.76), y: y(b), height: Math.max(2, y(0) - y(b)) }));
    }
    if (p.trips.length) {
      const cx = x + bw / 2;
      const mark = svg("path", { class: "trip", "data-trip": p.trips.length, d: "M" + (cx - 5) + " " + (T - 10) + " L" + (cx + 5) + " " + (T - 10) + " L" + cx + " " + (T - 1) + " Z" });
      mark.append(svg("title", {}, p.trips.map((t) => "trip " + time(t.at) + ": " + t.reason).join("\n")));
      root.append(mark, svg("line", { class: "limit", x1: cx, x2: cx, y1: T, y2: y(0) }));
    }
    const every = series.by === "hour" ? 12 : 15;
    if (i % every === 0) {
      const d = new Date(p.start).toISOString();
      root.append(svg("text", { class: "axis", x: x + bw / 2, y: H - 8, "text-anchor": "middle" }, series.by === "hour" ? d.slice(5, 10) + " " + d.slice(11, 13) + "h" : d.slice(5, 10)));
    }
  });
  if (limit !== null && limit !== undefined) {
    root.append(svg("line", { class: "limit", "data-limit": limit, x1: L, x2: W - R, y1: y(limit), y2: y(limit) }), svg("text", { class: "axis", x: L + 4, y: y(limit) - 3, "text-anchor": "start" }, "limit " + fmt(limit)));
  }
  root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  const totals = series.totals;
  const legend = key === "usd" ? "total " + usd(totals.usd) + (limit ? " · limit " + usd(limit) + " per " + series.by : " · no spend limit per " + series.by)
    : "total " + totals.events + " events, " + totals.blocked + " blocked, " + totals.trips + (totals.trips === 1 ? " trip" : " trips") + (limit ? " · limit " + limit + " per " + series.by : "");
  return el("div", { class: "chart" }, el("div", { class: "chart-title" }, title), root, el("div", { class: "legend" }, legend));
}

function renderCharts(series) {
  const span = series.by === "hour" ? "per hour, last 48 h" : "per day, last 90 days";
  $("charts").replaceChildren(chart(series, "usd", "Spend " + span), chart(series, "events", "Events " + span));
}

// A country's name in English ("GB" → "United Kingdom"); the two keys that are no country say what they hold.
const regionNames = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;
function countryName(code) {
  if (code === "other") return "other countries (past 24 in one bucket)";
  if (code === "unknown") return "no country (not a phone number)";
  try { return (regionNames && regionNames.of(code)) || ""; } catch (e) { return ""; }
}

const NEW_COUNTRY_MS = 86400000;

// Sends through the egress gate by destination country over the chart's range: one row per country,
// most sends first, with the current bucket's sends, spend, refusals and a bar of its share; a country
// first sent to in the last 24 hours is marked (the pumping signal).
function renderCountries(series) {
  const lines = series.countries || [];
  if (!lines.length) {
    $("countries").replaceChildren(el("p", { class: "hint" }, "No sends through the egress gate in this range."));
    return;
  }
  const current = new Map(((series.points[series.points.length - 1] || {}).countries || []).map((c) => [c.country, c.sends]));
  const most = Math.max(1, ...lines.map((c) => c.sends + c.blocked));
  const now = Date.now();
  const rows = lines.map((c) => {
    const fresh = c.firstSentAt !== null && now - c.firstSentAt < NEW_COUNTRY_MS;
    const sent = el("span", { class: "sent" }), refused = el("span", { class: "refused" });
    sent.style.width = (100 * c.sends / most).toFixed(1) + "%";
    refused.style.width = (100 * c.blocked / most).toFixed(1) + "%";
    const share = el("div", { class: "share", "aria-hidden": "true" }, sent, refused);
    const name = el("td", {}, el("span", { class: "cc mono" }, c.country), " ", el("span", { class: "cname" }, countryName(c.country)),
      fresh ? el("span", { class: "tag new", title: "first send " + time(c.firstSentAt) }, "new") : null, share);
    return el("tr", { "data-country": c.country, "data-new": fresh ? "1" : "0", class: fresh ? "new-country" : "" },
      name,
      el("td", { class: "num", "data-field": "sends" }, String(c.sends)),
      el("td", { class: "num", "data-field": "current" }, String(current.get(c.country) || 0)),
      el("td", { class: "num", "data-field": "usd" }, usd(c.usd)),
      el("td", { class: "num" + (c.blocked ? " refused" : ""), "data-field": "blocked" }, String(c.blocked)),
      el("td", { class: "when opt" }, c.firstSentAt ? time(c.firstSentAt) : "never (refused only)"));
  });
  const head = el("tr", {}, ...["Country", "Sends", series.by === "hour" ? "This hour" : "Today", "Spend", "Refused", "First send"].map((h, i) => el("th", { class: i === 5 ? "opt" : i > 0 ? "num" : "" }, h)));
  $("countries").replaceChildren(el("div", { class: "scroll" }, el("table", { id: "countries-table" }, el("thead", {}, head), el("tbody", {}, ...rows))));
}

async function showRejections(seq) {
  const r = await api("GET", "/admin/rejections?limit=200");
  if (seq !== viewSeq || !usable(r)) return;
  clearError();
  $("rejections-total").textContent = r.data.rejections.length + " shown, newest first (the last " + r.data.kept + " are kept" + (r.data.dropped ? "; " + r.data.dropped + " dropped under load" : "") + ")";
  $("rejections-body").replaceChildren(...r.data.rejections.map((x) => el("tr", { "data-reason": x.reason }, ...cells([time(x.atMs), x.route, el("span", { class: "mono" }, x.method + " " + x.path), x.status, x.reason, el("span", { class: "mono" }, x.client), x.account ? el("a", { href: "#/account/" + x.account, class: "mono" }, x.account) : "—"]))));
  $("rejections-empty").hidden = r.data.rejections.length > 0;
  show("rejections");
}

function dialog(id, setup) {
  const d = $(id);
  return new Promise((resolve) => {
    const form = d.querySelector("form");
    const cancel = d.querySelector("button[type=button]");
    const done = (value) => {
      form.onsubmit = null; cancel.onclick = null; d.onclose = null;
      if (d.open) d.close();
      resolve(value);
    };
    const read = setup();
    form.onsubmit = (event) => { event.preventDefault(); done(read()); };
    cancel.onclick = () => done(null);
    d.onclose = () => done(null);
    d.showModal();
  });
}

function askTotp(label, problem) {
  $("totp-title").textContent = "Two-factor code: " + label;
  $("totp-hint").textContent = problem || "Enter the current 6-digit code from your authenticator (ADMIN_TOTP_SECRET). It unlocks changes for 10 minutes.";
  $("totp-code").value = "";
  return dialog("totp-dialog", () => { setTimeout(() => $("totp-code").focus(), 0); return () => $("totp-code").value.trim(); });
}

function confirmAction(label, text) {
  $("confirm-title").textContent = label;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = label;
  return dialog("confirm-dialog", () => () => true);
}

function elevated() {
  return elevation !== null && elevation.expiresAt - Date.now() > 5000;
}

function showElevation() {
  const tag = $("elevation-status");
  tag.hidden = !elevated();
  tag.textContent = elevated() ? "changes unlocked until " + clock(elevation.expiresAt) : "";
}

// One code per ten minutes: trades a fresh code for an elevation token (POST /admin/elevate).
async function elevate(label) {
  let problem = null;
  for (;;) {
    const code = await askTotp(label, problem);
    if (code === null) return false;
    const r = await api("POST", "/admin/elevate", { totp: code });
    if (r.status === 200) {
      elevation = { token: r.data.elevation, expiresAt: Date.now() + r.data.ttlSeconds * 1000 };
      showElevation();
      return true;
    }
    if (r.status === 403 && r.data && String(r.data.error).startsWith("totp-")) { problem = r.data.message; continue; }
    usable(r);
    return false;
  }
}

async function mutate(method, path, body, label, warning) {
  busy = true;
  try {
    if (!totpRequired) {
      if (!(await confirmAction(label, warning))) return null;
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      if (totpRequired && !elevated() && !(await elevate(label))) return null;
      const r = await api(method, path, { body, elevation: totpRequired && elevation ? elevation.token : undefined });
      if (r.status === 403 && r.data && (String(r.data.error).startsWith("elevation-") || String(r.data.error).startsWith("totp-"))) {
        totpRequired = true;
        elevation = null;
        showElevation();
        continue;
      }
      return usable(r) || r.status === 502 ? r : null;
    }
    return null;
  } finally {
    busy = false;
  }
}

async function trip() {
  const sid = $("trip-button").getAttribute("data-sid");
  if (!currentAccount || sid !== currentAccount.sid) return;
  const reason = $("trip-reason").value.trim();
  const r = await mutate("POST", "/admin/accounts/" + sid + "/trip", reason ? { reason } : undefined, "Trip " + shortSid(sid),
    "Open the breaker of " + sid + " now: its inbound messages and calls are refused at the edge and, with action suspend, the Twilio subaccount is suspended.");
  if (r) { $("trip-reason").value = ""; say(r.data.tripped ? "Breaker of " + sid + " opened." : "The breaker of " + sid + " was already open: nothing changed.", r.data.tripped ? "ok" : "warn"); }
  await route(true);
}

async function reset() {
  const sid = $("reset-button").getAttribute("data-sid");
  if (!currentAccount || sid !== currentAccount.sid) return;
  const r = await mutate("POST", "/admin/accounts/" + sid + "/reset", undefined, "Reset " + shortSid(sid),
    "Close the breaker of " + sid + " and reactivate the Twilio subaccount if the guard suspended it.");
  if (r) {
    if (r.data.changed === false) say("The breaker of " + sid + " was already closed: nothing changed.", "warn");
    else say("Breaker of " + sid + " closed; " + ({ done: "Twilio account reactivated.", "not-needed": "nothing to reactivate at Twilio.", retrying: "reactivation at Twilio is being retried.", failed: "reactivation at Twilio FAILED." }[r.data.reactivation] || ""), r.data.reactivation === "failed" ? "error" : r.data.reactivation === "retrying" ? "warn" : "ok");
  }
  await route(true);
}

async function syncTriggers() {
  const sid = $("triggers-button").getAttribute("data-sid");
  if (!currentAccount || sid !== currentAccount.sid) return;
  const r = await mutate("POST", "/admin/accounts/" + sid + "/usage-triggers", undefined, "Sync usage triggers of " + shortSid(sid),
    "Create Twilio Usage Triggers for " + sid + " that mirror its policy's spend limits.");
  if (r && r.status === 502) say("Twilio refused: " + r.data.message, "error");
  else if (r) say("Usage triggers of " + sid + ": " + r.data.created.length + " created, " + r.data.kept.length + " kept, " + r.data.deleted.length + " deleted, " + r.data.skipped.length + " skipped.", "ok");
  await route(true);
}

let shownHash = null;
// keep: a refresh or an action's follow-up (the view stays); otherwise a navigation (cleared first).
async function route(keep) {
  clearTimeout(refreshTimer);
  if (!token) { signOut(); return; }
  const hash = location.hash || "#/";
  const seq = ++viewSeq;
  if (!keep || hash !== shownHash) {
    clearAccount();
    shownHash = hash;
  }
  const m = /^#\/account\/(.*)$/.exec(hash);
  if (m) {
    const sid = decodeURIComponent(m[1]);
    if (!/${ACCOUNT_SID.source}/.test(sid)) {
      $("missing-text").textContent = "“" + sid + "” is not an Account SID (AC followed by 32 lowercase hex characters).";
      show("missing");
    } else {
      if (!keep) show("account");
      await showAccount(sid, seq);
    }
  } else if (hash === "#/rejections") await showRejections(seq);
  else await showList(seq);
  if (token && seq === viewSeq) {
    $("status").textContent = "signed in · refreshed " + clock(Date.now());
    showElevation();
    refreshTimer = setTimeout(tick, REFRESH_MS);
  }
}

async function tick() {
  // Never re-render under an open dialog or a call in flight; try again at the next tick.
  if (busy || $("totp-dialog").open || $("confirm-dialog").open) { refreshTimer = setTimeout(tick, REFRESH_MS); return; }
  await route(true);
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token-input").value.trim();
  $("token-input").value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  offset = 0;
  route(false);
});
$("signout-button").addEventListener("click", () => signOut());
$("prev-button").addEventListener("click", () => { offset = Math.max(0, offset - PAGE_SIZE); route(true); });
$("next-button").addEventListener("click", () => { offset += PAGE_SIZE; route(true); });
let searchTimer = null;
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => { offset = 0; route(true); }, 250); });
$("filters").addEventListener("submit", (event) => { event.preventDefault(); offset = 0; route(true); });
$("sort").addEventListener("change", () => { offset = 0; route(true); });
$("filter").addEventListener("change", () => { offset = 0; route(true); });
$("by-hour").addEventListener("click", () => { usageBy = "hour"; route(true); });
$("by-day").addEventListener("click", () => { usageBy = "day"; route(true); });
$("trip-button").addEventListener("click", trip);
$("reset-button").addEventListener("click", reset);
$("triggers-button").addEventListener("click", syncTriggers);
window.addEventListener("hashchange", () => { say(""); route(false); });
route(false);
`;
