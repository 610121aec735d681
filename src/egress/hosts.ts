// Which hosts the REST egress gate forwards to (CONTRACT.md: "`<host>` must be a Twilio product host
// (`*.twilio.com`, from a fixed list), anything else is refused and nothing is fetched"), and how the
// gate's path `/twilio/<host>/<path>` splits. Pure.

/**
 * Twilio's product hosts: the `<product>.twilio.com` domains the official SDKs call (twilio-node
 * src/rest/*Base.ts, one base URL per product). A host outside this list is never fetched.
 */
export const TWILIO_PRODUCT_HOSTS: ReadonlySet<string> = new Set([
  "accounts", "api", "assistants", "bulkexports", "chat", "content", "conversations", "events", "flex-api",
  "frontline-api", "iam", "insights", "intelligence", "ip-messaging", "knowledge", "lookups", "marketplace",
  "messaging", "microvisor", "monitor", "notify", "numbers", "oauth", "preview", "preview-iam", "pricing",
  "proxy", "routes", "serverless", "studio", "supersim", "sync", "taskrouter", "trunking", "trusthub",
  "verify", "video", "voice", "wireless",
]);

/** Twilio's edge locations (https://www.twilio.com/docs/global-infrastructure/edge-locations). */
export const TWILIO_EDGES: ReadonlySet<string> = new Set([
  "ashburn", "dublin", "frankfurt", "roaming", "sao-paulo", "singapore", "sydney", "tokyo", "umatilla",
]);

/** Twilio's processing regions (https://www.twilio.com/docs/global-infrastructure/understanding-twilio-regions). */
export const TWILIO_REGIONS: ReadonlySet<string> = new Set(["au1", "br1", "de1", "ie1", "jp1", "sg1", "us1", "us2"]);

export interface GatePath {
  /** Lower-cased host, e.g. `api.twilio.com` or `api.sydney.au1.twilio.com`. */
  host: string;
  /** The product label (`api`, `messaging`, …). */
  product: string;
  /** The path on that host, starting with `/` (never empty). */
  path: string;
}

/** The route prefix of the gate. */
export const GATE_PREFIX = "/twilio/";

/**
 * Splits `/twilio/<host>/<path>` and checks the host: `<product>.twilio.com`, optionally with an edge
 * and a region (`<product>.<edge>.<region>.twilio.com`, as the SDKs build it from `edge`/`region`) or a
 * region alone. Null when the path is not the gate's or the host is not on the list.
 */
export function parseGatePath(pathname: string): GatePath | null {
  if (!pathname.startsWith(GATE_PREFIX)) return null;
  const rest = pathname.slice(GATE_PREFIX.length);
  const slash = rest.indexOf("/");
  const host = (slash < 0 ? rest : rest.slice(0, slash)).toLowerCase();
  const path = slash < 0 ? "/" : rest.slice(slash);
  const product = allowedProduct(host);
  if (product === null) return null;
  // Dot segments could walk out of the path the gate checked (`/2010-04-01/Accounts/AC…/../../…`).
  if (/(^|\/)\.\.?(\/|$)/.test(path) || /%2e/i.test(path) || path.includes("\\")) return null;
  return { host, product, path };
}

/** The product of an allowed host, or null. */
export function allowedProduct(host: string): string | null {
  const labels = host.split(".");
  if (labels.length < 3 || labels.at(-1) !== "com" || labels.at(-2) !== "twilio") return null;
  const [product, ...middle] = labels.slice(0, -2);
  if (product === undefined || !TWILIO_PRODUCT_HOSTS.has(product)) return null;
  if (middle.length === 0) return product;
  if (middle.length === 1 && TWILIO_REGIONS.has(middle[0]!)) return product;
  if (middle.length === 2 && TWILIO_EDGES.has(middle[0]!) && TWILIO_REGIONS.has(middle[1]!)) return product;
  return null;
}

/** The upstream URL: `api.twilio.com` goes to TWILIO_API_BASE (CONTRACT.md), every other host to itself. */
export function upstreamUrl(gate: GatePath, search: string, apiBase: string): string {
  const base = gate.host === "api.twilio.com" ? apiBase : `https://${gate.host}`;
  return `${base}${gate.path}${search}`;
}
