// The one redactor (src/util/redact.ts), used by the logger, the REST error details and tools/webhook.ts.
import { describe, expect, it } from "vitest";
import { REDACTED, redactSecrets } from "../../src/util/redact.ts";

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
