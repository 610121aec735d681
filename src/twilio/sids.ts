// Twilio SIDs, in one place. A SID is 34 characters: a two-letter prefix naming the resource type and 32
// hex digits (https://www.twilio.com/docs/glossary/what-is-a-sid); the REST API's path parameters are
// documented with these patterns (twilio_api_v2010.json, e.g. `^AC[0-9a-fA-F]{32}$`).
//
// Case: Twilio issues lowercase hex. An AccountSid is also our key (it names the account's Durable
// Object, the directory row, the egress gate's Basic user and the admin API's paths), so only Twilio's
// own lowercase spelling is accepted: one account, one name (CONTRACT.md: TWILIO_ACCOUNT_SID). Other
// SIDs are only checked for shape before they go into a path or a ledger key, so they take the OpenAPI
// pattern as documented, either case.

/** 32 hex digits of either case, as the OpenAPI patterns allow. */
const HEX32 = "[0-9a-fA-F]{32}";

/** Pattern sources, for SIDs inside a larger pattern (a REST path): no anchors, no capturing groups, no top-level `|`. */
export const SID_SOURCE = {
  /** AC + 32 lowercase hex: Twilio's spelling, and our key for an account. */
  account: "AC[0-9a-f]{32}",
  /** SM for SMS, MM for MMS (https://www.twilio.com/docs/messaging/api/message-resource). */
  message: `(?:SM|MM)${HEX32}`,
  /** CA (https://www.twilio.com/docs/voice/api/call-resource). */
  call: `CA${HEX32}`,
  /** ME: a message's media (https://www.twilio.com/docs/messaging/api/media-resource). */
  media: `ME${HEX32}`,
  /** UT (https://www.twilio.com/docs/usage/api/usage-trigger). */
  usageTrigger: `UT${HEX32}`,
  /** SK: an API key (https://www.twilio.com/docs/iam/api-keys). */
  apiKey: `SK${HEX32}`,
  /** AP: a TwiML application (https://www.twilio.com/docs/usage/api/applications). */
  application: `AP${HEX32}`,
  /** MG: a Messaging Service (https://www.twilio.com/docs/messaging/api/service-resource). */
  messagingService: `MG${HEX32}`,
  /** HX: a Content template (https://www.twilio.com/docs/content/content-api-resources). */
  content: `HX${HEX32}`,
} as const;

const whole = (source: string): RegExp => new RegExp(`^${source}$`);

export const ACCOUNT_SID = whole(SID_SOURCE.account);
export const MESSAGE_SID = whole(SID_SOURCE.message);
export const CALL_SID = whole(SID_SOURCE.call);
export const MEDIA_SID = whole(SID_SOURCE.media);
export const USAGE_TRIGGER_SID = whole(SID_SOURCE.usageTrigger);
export const API_KEY_SID = whole(SID_SOURCE.apiKey);
export const APPLICATION_SID = whole(SID_SOURCE.application);
export const MESSAGING_SERVICE_SID = whole(SID_SOURCE.messagingService);
export const CONTENT_SID = whole(SID_SOURCE.content);
/** What a send returns: a message (SM/MM) or a call (CA). */
export const SEND_SID = whole(`(?:${SID_SOURCE.message}|${SID_SOURCE.call})`);
