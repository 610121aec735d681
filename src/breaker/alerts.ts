// Operator alerts: a JSON POST to ALERT_WEBHOOK_URL with a Slack-compatible `text` field (Slack's
// incoming webhooks read `text`; other fields are ignored by Slack and useful to other receivers),
// and an SMS through the parent account (sent by the Twilio REST client). Never a secret in them.

/** An alert receiver gets the same budget as a Twilio call: slow receivers must not hold the alarm. */
export const ALERT_TIMEOUT_MS = 10_000;

export class AlertDeliveryError extends Error {
  readonly status: number | "timeout" | "network";
  constructor(status: number | "timeout" | "network") {
    super(`alert webhook answered ${status}`);
    this.name = "AlertDeliveryError";
    this.status = status;
  }
}

/**
 * Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping):
 * text from a payload (a UsageTriggerSid, a trip reason) must not become a link, a mention or markup.
 */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export interface AlertFigures {
  /** Today's (UTC) spend of the account, as the ledger has it. */
  spendTodayUsd?: number;
  /** The account's page on the dashboard, when PUBLIC_URL says where the guard is. */
  link?: string | null;
}

/** The alert line: level, account, message, today's spend and the dashboard link; escaped for Slack. */
export function alertText(account: string, level: string, message: string, figures: AlertFigures = {}): string {
  const spend = figures.spendTodayUsd === undefined ? "" : ` (spend today ${figures.spendTodayUsd.toFixed(2)} USD)`;
  const link = figures.link ? ` ${figures.link}` : "";
  return `[twilio-edge-guard] ${level.toUpperCase()} ${escapeSlack(account)}: ${escapeSlack(message)}${spend}${link}`;
}

/** Where the operator opens the account: {PUBLIC_URL}/admin#/account/{sid}, or null without PUBLIC_URL. */
export function dashboardLink(publicUrl: string | null, sid: string): string | null {
  const base = publicUrl?.split(",")[0]?.trim().replace(/\/+$/, "");
  return base ? `${base}/admin#/account/${sid}` : null;
}

export async function sendAlertWebhook(url: string, body: Record<string, unknown>, doFetch: typeof fetch = fetch): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ALERT_TIMEOUT_MS);
  try {
    let response: Response;
    try {
      response = await doFetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch {
      throw new AlertDeliveryError(controller.signal.aborted ? "timeout" : "network");
    }
    await response.body?.cancel();
    if (!response.ok) throw new AlertDeliveryError(response.status);
  } finally {
    clearTimeout(timer);
  }
}
