// twilio-edge-guard/client: points the official twilio-node SDK at the guard's REST egress gate.
//
//   import twilio from "twilio";
//   import { GuardRequestClient } from "twilio-edge-guard/client";
//   const client = twilio(accountSid, egressKey, { httpClient: new GuardRequestClient("https://guard.example.workers.dev") });
//
// No Twilio SDK has a base-URL setting; twilio-node takes a custom HTTP client (`httpClient`), a
// RequestClient whose request(opts) gets the full URL the SDK built (`opts.uri`, after edge/region
// rewrote the host). This one rewrites `https://<host>/<path>` to `<guard>/twilio/<host>/<path>` and
// leaves everything else (credentials, form, timeouts, retries) to twilio-node's own client.
import twilio from "twilio";

const { RequestClient } = twilio;

/** The guard's base URL without a trailing slash; refuses anything but http(s) without credentials. */
export function guardBase(guardUrl) {
  const url = new URL(guardUrl);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError("twilio-edge-guard: the guard URL must be http(s)");
  if (url.username || url.password || url.search || url.hash) throw new TypeError("twilio-edge-guard: the guard URL must not carry credentials, a query or a fragment");
  return url.href.replace(/\/+$/, "");
}

/** `https://<host>/<path>?<query>` → `<guard>/twilio/<host>/<path>?<query>`. A URI already on the guard is kept. */
export function gateUri(base, uri) {
  if (uri.startsWith(`${base}/twilio/`)) return uri;
  const url = new URL(uri);
  if (url.protocol !== "https:") throw new TypeError(`twilio-edge-guard: not an https Twilio URL: ${url.protocol}`);
  return `${base}/twilio/${url.host}${url.pathname}${url.search}`;
}

export class GuardRequestClient extends RequestClient {
  /**
   * @param {string} guardUrl the guard's URL, e.g. https://guard.example.workers.dev
   * @param {object} [options] RequestClient options (timeout, keepAlive, autoRetry, …)
   */
  constructor(guardUrl, options) {
    super(options);
    this.guardUrl = guardBase(guardUrl);
  }

  request(opts) {
    return super.request({ ...opts, uri: gateUri(this.guardUrl, opts.uri) });
  }
}

/** twilio(accountSid, secret, options) with its requests going through the guard. */
export function guardedTwilio(guardUrl, accountSid, secret, options = {}) {
  const { httpClientOptions, ...rest } = options;
  return twilio(accountSid, secret, { ...rest, httpClient: new GuardRequestClient(guardUrl, httpClientOptions) });
}
