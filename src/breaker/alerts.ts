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

export function alertText(account: string, level: string, message: string): string {
  return `[twilio-edge-guard] ${level.toUpperCase()} ${account}: ${message}`;
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
