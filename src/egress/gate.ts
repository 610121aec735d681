// ANY /twilio/<host>/<path>: the REST egress gate (CONTRACT.md, "REST egress gate"). A thin shell over
// the pure modules beside it. Order matters: everything that can refuse runs before anything is fetched.
//   1. EGRESS_MODE off → 404; a host off the allowlist → 403 (nothing fetched);
//   2. credentials (egress key, the account's own token, an API key), rate limited per client address;
//      an egress key only within its scope (scope.ts);
//   3. a send (POST Messages.json / Calls.json): priced and reserved in the account's Durable Object, in
//      the same call that checks an egress key (one Durable Object call on the hot path, shared by the
//      account's sends that this isolate has at once: reservation-batches.ts);
//   4. forwarded with method, query and body unchanged (plus StatusCallback / TimeLimit when absent);
//   5. Twilio's answer relayed, and the reservation settled after the answer: carried by the account's
//      next reservation call, or written within a few milliseconds by waitUntil (settlements.ts); a
//      batch whose write fails goes to the LEDGER_RETRY queue (breaker/ledger-queue.ts), never dropped.
// An upstream outcome that is unknown (timeout, connection lost) is answered 409, never 5xx: twilio-java
// retries any 5xx POST, which could send the message twice.
import type { Config, EgressMode } from "../config/config.ts";
import { settleAtLeastOnce, type LedgerRetryMessage } from "../breaker/ledger-queue.ts";
import { GuardError } from "../http/errors.ts";
import type { Logger } from "../observability/log.ts";
import { metrics } from "../observability/metrics.ts";
import type { Settlement } from "../ledger/reservations.ts";
import { toBase64, utf8 } from "../util/encoding.ts";
import { readBody } from "../webhooks/read.ts";
import { AuthLimiter, type FailureCounter } from "./auth-limit.ts";
import { presentedCredentials, tokenMatches } from "./credentials.ts";
import { parseGatePath, upstreamUrl } from "./hosts.ts";
import { hashEgressKey } from "./keys.ts";
import { lookupQuery, settlementFromList, type SentMessage } from "./lookup.ts";
import { RESERVATION_ID, type GateRefusal, type ReserveAnswer, type ReserveRequest } from "./protocol.ts";
import { refusal } from "./refusals.ts";
import { ReservationFailed, reserveAll, type ReservationBatcher, type ReserveCall, type ReservingGuard } from "./reservation-batches.ts";
import { requestScope } from "./scope.ts";
import { SendError, sendFacts } from "./send.ts";
import type { SettlementFailure, SettlementItem, SettlementQueue, SettlementWrite } from "./settlements.ts";
import { SEND_SID } from "../twilio/sids.ts";

/** The guard's own status path: a status callback the gate added, naming its reservation. */
export const GUARD_STATUS_PATH = "/webhooks/_guard/status/";
/** Twilio's SDKs give up after 30 s (twilio-node's default timeout): answer before they do. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 25_000;
/** A send's form body is a few KiB at most (1600 characters, 10 MediaUrls); the webhook cap is ample. */
const MAX_SEND_BODY_BYTES = 64 * 1024;
/** Request headers the gate passes on; nothing else (no cookies, no Cloudflare headers) reaches Twilio. */
const FORWARDED_REQUEST_HEADERS = ["accept", "accept-charset", "content-type", "user-agent", "i-twilio-idempotency-token", "x-twilio-webhook-enabled"];
/** Response headers that describe the connection, not the answer: dropped when relaying. */
const HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "set-cookie", "upgrade"];

export interface EgressLedger extends ReservingGuard {
  settleSends(sid: string, items: SettlementItem[], atMs?: number): Promise<unknown>;
  checkEgressKey(sid: string, keyId: string, hash: string, atMs?: number): Promise<boolean>;
}

export interface EgressTrace {
  account?: string | null;
  verdict?: string;
}

export interface EgressDeps {
  config: Config;
  logger: Logger;
  mode: EgressMode;
  now: () => number;
  resolveTokens: (sid: string) => Promise<readonly string[] | null>;
  ledger: (sid: string) => EgressLedger;
  failures: FailureCounter;
  limiter: AuthLimiter;
  waitUntil: (promise: Promise<unknown>) => void;
  fetch?: typeof fetch;
  upstreamTimeoutMs?: number;
  /** Reservations waiting to share a call (one per isolate: src/app.ts), or null: each send in a call of its own. */
  reservations: ReservationBatcher | null;
  /** Settlements waiting to be written (one queue per isolate: src/app.ts). */
  settlements: SettlementQueue;
  /** Where a settlement batch whose write failed goes to be written again (LEDGER_RETRY). */
  retryQueue: Queue<LedgerRetryMessage>;
}

/** One decoder for every send's form (stateless between whole-buffer decode() calls): none made per send. */
const utf8Decoder = new TextDecoder();

/** Failed credentials: counted against the client's address, then refused (rate limited past the limit). */
async function denied(deps: EgressDeps, address: string, now: number): Promise<never> {
  const retryAfterS = await deps.limiter.fail(deps.failures, address, now);
  metrics.inc("guard_egress_refused_total", { reason: retryAfterS === null ? "credentials" : "rate-limited-auth" });
  if (retryAfterS !== null) throw refusal("rate-limited-auth", "Too many failed authentications from this address; retry later.", { retryAfterS });
  throw refusal("credentials", "Authenticate");
}

function refusedBy(reason: string, trace: EgressTrace): void {
  trace.verdict = `egress-${reason}`;
}

function gateRefusal(r: GateRefusal): GuardError {
  return refusal(r.reason, r.detail, r.retryAfterS === undefined ? {} : { retryAfterS: r.retryAfterS });
}

/** `url` is the request's, parsed once by the caller (src/app.ts) for its log line and here. */
export async function handleEgress(request: Request, deps: EgressDeps, trace: EgressTrace, url = new URL(request.url)): Promise<Response> {
  if (deps.mode === "off") throw refusal("gate-off", "The REST egress gate is off (EGRESS_MODE).");
  const gate = parseGatePath(url.pathname);
  if (gate === null) {
    metrics.inc("guard_egress_refused_total", { reason: "host-not-allowed" });
    throw refusal("host-not-allowed", "Only Twilio product hosts can be reached through the gate.");
  }
  const now = deps.now();
  const address = request.headers.get("cf-connecting-ip") ?? "unknown";
  const limitedFor = deps.limiter.limited(address, now);
  if (limitedFor !== null) {
    metrics.inc("guard_egress_refused_total", { reason: "rate-limited-auth" });
    throw refusal("rate-limited-auth", "Too many failed authentications from this address; retry later.", { retryAfterS: limitedFor });
  }
  const scope = requestScope(request.method, gate);
  const presented = presentedCredentials(request.headers.get("authorization"), scope.pathAccount);

  let account: string | null;
  let key: { id: string; hash: string } | null = null;
  switch (presented.kind) {
    case "invalid":
      return denied(deps, address, now);
    case "token": {
      account = presented.accountSid;
      const tokens = await deps.resolveTokens(account);
      if (tokens === null || !tokenMatches(presented.secret, tokens)) return denied(deps, address, now);
      break;
    }
    case "api-key":
      // Twilio authenticates the key; the account it acts for is the path's.
      account = scope.pathAccount;
      break;
    case "egress-key":
      account = presented.accountSid;
      if (!scope.egressKeyAllowed) {
        metrics.inc("guard_egress_refused_total", { reason: "scope" });
        throw refusal("scope", "An egress key can only send and read this account's messages and calls.");
      }
      key = { id: presented.keyId, hash: await hashEgressKey(presented.key) };
      break;
  }
  trace.account = account;

  const rawBody = request.method === "GET" || request.method === "HEAD" ? null : await readBody(request, MAX_SEND_BODY_BYTES);
  let body: Uint8Array | string | null = rawBody;
  let reservation: { id: string; account: string } | null = null;
  let sentForm: URLSearchParams | null = null;

  if (scope.send !== null && account !== null) {
    const original = rawBody === null ? "" : utf8Decoder.decode(rawBody);
    const form = new URLSearchParams(original);
    let facts;
    try {
      facts = sendFacts(scope.send, form);
    } catch (error) {
      if (error instanceof SendError) throw refusal("bad-send", error.message);
      throw error;
    }
    const answer = await reserve(deps, { accountSid: account, atMs: now, mode: deps.mode, key, send: facts });
    if (!answer.ok) {
      if (answer.refusal.reason === "credentials") return denied(deps, address, now);
      refusedBy(answer.refusal.reason, trace);
      metrics.inc("guard_egress_sends_total", { outcome: "refused", reason: answer.refusal.reason });
      deps.logger.warn("egress-refused", { account, reason: answer.refusal.reason, country: facts.destination.country ?? "unknown", kind: facts.kind });
      throw gateRefusal(answer.refusal);
    }
    if (answer.wouldRefuse !== null) {
      trace.verdict = `egress-would-refuse-${answer.wouldRefuse.reason}`;
      metrics.inc("guard_egress_sends_total", { outcome: "report-only", reason: answer.wouldRefuse.reason });
      deps.logger.warn("egress-would-refuse", { account, reason: answer.wouldRefuse.reason, mode: deps.mode });
    } else {
      trace.verdict = "egress-allowed";
      metrics.inc("guard_egress_sends_total", { outcome: "allowed", reason: "none" });
    }
    reservation = { id: answer.reservationId, account };
    // What a lookup after a failed upstream call needs; read from the form only then (not per send).
    if (facts.kind === "message") sentForm = form;
    const addition = addedFields(facts.hasStatusCallback ? null : statusCallbackField(statusBase(deps.config, url), answer.reservationId), answer.setTimeLimitS);
    if (addition !== "") body = original === "" ? addition : `${original}&${addition}`;
  } else if (key !== null && account !== null) {
    if (!(await deps.ledger(account).checkEgressKey(account, key.id, key.hash, now))) return denied(deps, address, now);
    trace.verdict = "egress-forwarded";
  } else {
    trace.verdict = "egress-forwarded";
  }

  const headers = new Headers();
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  // An egress key is swapped for the parent's credentials; a token or an API key goes on unchanged.
  headers.set("authorization", key !== null ? parentAuthorization(deps.config) : request.headers.get("authorization")!);

  const doFetch = deps.fetch ?? fetch;
  let upstream: Response;
  let text: string;
  try {
    ({ answer: upstream, text } = await fetchWithin(doFetch, upstreamUrl(gate, url.search, deps.config.apiBase), {
      method: request.method,
      headers,
      // A string body goes as its UTF-8 bytes either way; as a string only where it adds no Content-Type
      // (fetch sets text/plain on a string body without one), so no copy is encoded here per send.
      body: typeof body === "string" && !headers.has("content-type") ? utf8(body) : body,
      redirect: "manual",
    }, deps.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS));
  } catch (error) {
    deps.logger.warn("egress-upstream-failed", { account, host: gate.host, error: error instanceof Error ? deps.logger.redact(error.name) : "failed" });
    if (reservation !== null) {
      settle(deps, reservation, { type: "unknown" });
      // A message may have been created: look it up (after the answer) and settle from what Twilio has.
      if (sentForm !== null) deps.waitUntil(settleFromMessages(deps, reservation, sentMessage(sentForm, now), gate, url));
    }
    refusedBy("upstream-unknown", trace);
    throw refusal("upstream-unknown", "Twilio did not answer in time; the request may have been made. Look it up before retrying.");
  }
  if (reservation !== null) settle(deps, reservation, settlementOf(upstream.status, text));

  // Twilio's headers copied by the runtime, then those of the connection dropped (no entry made per header).
  const relayed = new Response(request.method === "HEAD" ? null : text, { status: upstream.status, headers: upstream.headers });
  for (const name of HOP_BY_HOP) relayed.headers.delete(name);
  return relayed;
}

/**
 * The form fields the gate adds to a send, encoded as `URLSearchParams` encodes them: its StatusCallback
 * (already encoded, statusCallbackField) and a TimeLimit (digits); "" when it adds none.
 */
export function addedFields(statusCallback: string | null, timeLimitS: number | null): string {
  const timeLimit = timeLimitS === null ? null : `TimeLimit=${timeLimitS}`;
  if (statusCallback === null) return timeLimit ?? "";
  return timeLimit === null ? statusCallback : `${statusCallback}&${timeLimit}`;
}

/** The last status base and its encoded `StatusCallback=<base>/webhooks/_guard/status/` (one base per deployment). */
let encodedStatusBase: { base: string; field: string } | null = null;

/**
 * `StatusCallback=<base>/webhooks/_guard/status/<id>`, form-encoded as `URLSearchParams` does. The base
 * part is encoded once per base; a reservation id (hex digits and '-', RESERVATION_ID) encodes as itself.
 */
export function statusCallbackField(base: string, reservationId: string): string {
  if (!RESERVATION_ID.test(reservationId)) return new URLSearchParams({ StatusCallback: `${base}${GUARD_STATUS_PATH}${reservationId}` }).toString();
  if (encodedStatusBase === null || encodedStatusBase.base !== base) {
    encodedStatusBase = { base, field: new URLSearchParams({ StatusCallback: `${base}${GUARD_STATUS_PATH}` }).toString() };
  }
  return `${encodedStatusBase.field}${reservationId}`;
}

function sentMessage(form: URLSearchParams, reservedAtMs: number): SentMessage {
  return { to: form.get("To")!, from: form.get("From"), messagingServiceSid: form.get("MessagingServiceSid"), body: form.get("Body"), reservedAtMs };
}

/** One fetch and its whole body within `ms`, or a TimeoutError (the request is aborted). */
async function fetchWithin(doFetch: typeof fetch, url: string, init: RequestInit, ms: number): Promise<{ answer: Response; text: string }> {
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(new DOMException("upstream timeout", "TimeoutError"));
    }, ms);
  });
  try {
    const exchange = (async () => {
      // `init` is the caller's own object, made for this call: the signal goes on it, not on a copy.
      init.signal = abort.signal;
      const answer = await doFetch(url, init);
      return { answer, text: await answer.text() };
    })();
    return await Promise.race([exchange, timeout]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/** Lists the account's newest messages to the send's number (parent's credentials) and settles by what it finds. */
async function settleFromMessages(deps: EgressDeps, reservation: { id: string; account: string }, sent: SentMessage, gate: { host: string; product: string }, url: URL): Promise<void> {
  try {
    const listUrl = upstreamUrl({ ...gate, path: `/2010-04-01/Accounts/${reservation.account}/Messages.json` }, `?${lookupQuery(sent).toString()}`, deps.config.apiBase);
    const { answer, text } = await fetchWithin(deps.fetch ?? fetch, listUrl, {
      headers: { authorization: parentAuthorization(deps.config), accept: "application/json" },
      redirect: "manual",
    }, deps.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS);
    const settlement = answer.ok ? settlementFromList(sent, text) : null;
    if (settlement === null) return;
    // Written as the gate's other settlements are: directly, else through the retry queue.
    await settlementWrite(deps, reservation.account)([{ reservationId: reservation.id, settlement }]);
  } catch (error) {
    // Left unknown: the estimate stays counted (once); the guard's status callback binds it if one comes.
    deps.logger.warn("egress-lookup-failed", { account: reservation.account, host: url.host, error: error instanceof Error ? deps.logger.redact(error.name) : "failed" });
  }
}

/**
 * The send's reservation, through this isolate's ReservationBatcher (reservation-batches.ts): alone
 * when no call of the account is in flight, else in the next call with the account's other sends.
 */
async function reserve(deps: EgressDeps, req: ReserveRequest): Promise<ReserveAnswer> {
  const call = reservationCall(deps, req.accountSid);
  if (deps.reservations === null) {
    const [outcome] = await call([req]);
    if (outcome === undefined || "failed" in outcome) throw new ReservationFailed();
    return outcome;
  }
  return deps.reservations.reserve(req, call, deps.waitUntil);
}

/**
 * The reservation call, carrying the account's settlements that wait in this isolate (settlements.ts).
 * If the call fails they are handed back to be written by the account's writer; that hand-back is kept
 * alive by waitUntil (of the request making the call), so it happens even when that request is
 * cancelled mid-call.
 */
function reservationCall(deps: EgressDeps, account: string): ReserveCall {
  return (reqs) => {
    const queue = deps.settlements;
    const carried = queue.take(account);
    // A stub that cannot even be made rejects like a failed call, so what it was to carry is handed back.
    const call = (async () => reserveAll(deps.ledger(account), account, reqs, carried))();
    if (carried.length > 0) {
      deps.waitUntil(
        call.then(
          () => undefined,
          () => queue.putBack(account, carried, settlementWrite(deps, account), settlementFailed(deps, account)) ?? undefined,
        ),
      );
    }
    return call;
  };
}

function settle(deps: EgressDeps, reservation: { id: string; account: string }, settlement: Settlement): void {
  const writer = deps.settlements.add(
    reservation.account,
    { reservationId: reservation.id, settlement },
    settlementWrite(deps, reservation.account),
    settlementFailed(deps, reservation.account),
  );
  if (writer !== null) deps.waitUntil(writer);
}

/** A batch's write: to the account's Durable Object, else to the retry queue (at least once). */
function settlementWrite(deps: EgressDeps, account: string): SettlementWrite {
  return (items) =>
    settleAtLeastOnce(
      { accountSid: account, items, atMs: deps.now() },
      { settle: (batch) => deps.ledger(account).settleSends(account, batch.items, batch.atMs), queue: deps.retryQueue, logger: deps.logger },
    );
}

/** A batch neither written nor queued (settleAtLeastOnce counted it as lost). */
function settlementFailed(deps: EgressDeps, account: string): SettlementFailure {
  return (error, items) => deps.logger.error("egress-settle-lost", error, { account, settlements: items.length });
}

/** Twilio's answer to a send: created (2xx with a Sid, maybe a price) or not. */
export function settlementOf(status: number, text: string): Settlement {
  if (status < 200 || status > 299) return { type: "rejected" };
  try {
    const body = JSON.parse(text) as { sid?: unknown; price?: unknown };
    if (typeof body.sid === "string" && SEND_SID.test(body.sid)) {
      const price = typeof body.price === "string" && body.price.trim() !== "" && Number.isFinite(Number(body.price)) ? Number(body.price) : null;
      return { type: "accepted", sid: body.sid, priceUsd: price };
    }
  } catch {
    // An XML answer (a path without .json): created, but its Sid cannot be bound here.
  }
  return { type: "unknown" };
}

/** The parent's Basic credentials, encoded once per configuration (getConfig keeps one per isolate). */
const parentAuthorizations = new WeakMap<Config, string>();

function parentAuthorization(config: Config): string {
  let value = parentAuthorizations.get(config);
  if (value === undefined) {
    value = `Basic ${toBase64(utf8(`${config.accountSid}:${config.authTokens[0]!}`))}`;
    parentAuthorizations.set(config, value);
  }
  return value;
}

/** The base URL the guard hands out for its own status callbacks: PUBLIC_URL, else the request's origin. */
function statusBase(config: Config, url: URL): string {
  return config.publicUrl ?? url.origin;
}

/** The reservation a guard status path names, or null. */
export function reservationOfStatusPath(pathname: string): string | null {
  if (!pathname.startsWith(GUARD_STATUS_PATH)) return null;
  const id = pathname.slice(GUARD_STATUS_PATH.length);
  return RESERVATION_ID.test(id) ? id : null;
}
