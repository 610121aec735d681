// The answers given in the app's place while an account's breaker is open. Both are safe TwiML:
// nothing is sent, nothing is connected, nothing is billed beyond the inbound leg Twilio already took.

/** Messaging: an empty Response sends no reply (https://www.twilio.com/docs/messaging/twiml). */
export const BLOCKED_MESSAGE_TWIML = "<Response/>";
/** Voice: <Reject> refuses the call before it is answered, so the caller is not billed for it (https://www.twilio.com/docs/voice/twiml/reject). */
export const BLOCKED_CALL_TWIML = '<Response><Reject reason="busy"/></Response>';

export function blockedAnswer(kind: "message" | "call"): Response {
  return new Response(kind === "call" ? BLOCKED_CALL_TWIML : BLOCKED_MESSAGE_TWIML, {
    status: 200,
    headers: { "content-type": "text/xml", "x-guard-breaker": "open" },
  });
}
