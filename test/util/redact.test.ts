// The one redactor (src/util/redact.ts), used by the logger, the REST error details and tools/webhook.ts.
import { describe, expect, it } from "vitest";
import { Logger } from "../../src/observability/log.ts";
import { REDACTED, redactionOrder, redactOrdered, redactSecrets } from "../../src/util/redact.ts";

describe("redactSecrets", () => {
  it("replaces every occurrence of every secret", () => {
    expect(redactSecrets("a=tok-123456 b=tok-123456 c=other-secret", ["tok-123456", "other-secret"])).toBe(
      `a=${REDACTED} b=${REDACTED} c=${REDACTED}`,
    );
  });

  it("removes a secret that contains another whole, whatever order they are given in", () => {
    const token = "primary-token-0123456789";
    const prefix = "primary-token";
    expect(redactSecrets(`auth ${token}`, [prefix, token])).toBe(`auth ${REDACTED}`);
    expect(redactSecrets(`auth ${token}`, [token, prefix])).toBe(`auth ${REDACTED}`);
  });

  it("skips empty values and leaves text without secrets as it was", () => {
    expect(redactSecrets("nothing secret here", ["", "absent-secret"])).toBe("nothing secret here");
  });
});

describe("redactOrdered", () => {
  it("gives what redactSecrets gives for the secrets in redactionOrder", () => {
    const secrets = ["primary-token", "", "primary-token-0123456789", "other-secret"];
    const text = "a=primary-token-0123456789 b=primary-token c=other-secret d=primary-token-0123456789";
    expect(redactionOrder(secrets)).toEqual(["primary-token-0123456789", "primary-token", "other-secret"]);
    expect(redactOrdered(text, redactionOrder(secrets))).toBe(redactSecrets(text, secrets));
  });
});

describe("Logger", () => {
  it("orders its secrets once: a secret containing another is removed whole in every line", () => {
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    const original = console.log;
    console.log = log;
    try {
      const logger = new Logger(["primary-token", "primary-token-0123456789"]);
      for (let i = 0; i < 2; i++) logger.request({ route: "r", method: "GET", status: 200, durationMs: i, note: "primary-token-0123456789" });
    } finally {
      console.log = original;
    }
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(JSON.parse(line).note).toBe(REDACTED);
  });
});
