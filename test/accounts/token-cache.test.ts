import { describe, expect, it, vi } from "vitest";
import { NEGATIVE_TTL_MS, REFRESH_MIN_INTERVAL_MS, TOKEN_TTL_MS, TokenCache, type TokenSource } from "../../src/accounts/token-cache.ts";

const parent = { sid: "AC00000000000000000000000000000001", tokens: ["p1", "p2"] };
const SUB = "AC0000000000000000000000000000000a";

function source(answers: Array<string | null>) {
  const calls: Array<{ sid: string; refresh: boolean }> = [];
  const s: TokenSource = {
    subaccountToken: vi.fn(async (sid: string, options: { refresh: boolean }) => {
      calls.push({ sid, refresh: options.refresh });
      return answers.length > 1 ? answers.shift()! : answers[0]!;
    }),
  };
  return { s, calls };
}

describe("TokenCache", () => {
  it("answers the parent's tokens from the environment without asking anyone", async () => {
    const { s, calls } = source(["x"]);
    expect(await new TokenCache().tokensFor(parent.sid, parent, s)).toEqual(["p1", "p2"]);
    expect(calls).toHaveLength(0);
  });

  it("asks once per TTL for a subaccount's token", async () => {
    let now = 1_000_000;
    const cache = new TokenCache(() => now);
    const { s, calls } = source(["sub-token"]);
    expect(await cache.tokensFor(SUB, parent, s)).toEqual(["sub-token"]);
    expect(await cache.tokensFor(SUB, parent, s)).toEqual(["sub-token"]);
    expect(calls).toHaveLength(1);
    now += TOKEN_TTL_MS;
    await cache.tokensFor(SUB, parent, s);
    expect(calls).toHaveLength(2);
  });

  it("remembers an unknown SID for the negative TTL", async () => {
    let now = 0;
    const cache = new TokenCache(() => now);
    const { s, calls } = source([null]);
    expect(await cache.tokensFor(SUB, parent, s)).toBeNull();
    now += NEGATIVE_TTL_MS - 1;
    expect(await cache.tokensFor(SUB, parent, s)).toBeNull();
    expect(calls).toHaveLength(1);
    now += 1;
    await cache.tokensFor(SUB, parent, s);
    expect(calls).toHaveLength(2);
  });

  it("refreshes a rotated token at most once per interval per SID", async () => {
    let now = 0;
    const cache = new TokenCache(() => now);
    const { s, calls } = source(["old", "new"]);
    await cache.tokensFor(SUB, parent, s);
    expect(await cache.tokensFor(SUB, parent, s, { refresh: true })).toEqual(["old"]);
    expect(calls).toHaveLength(1);
    now += REFRESH_MIN_INTERVAL_MS;
    expect(await cache.tokensFor(SUB, parent, s, { refresh: true })).toEqual(["new"]);
    expect(calls).toEqual([
      { sid: SUB, refresh: false },
      { sid: SUB, refresh: true },
    ]);
  });
});
