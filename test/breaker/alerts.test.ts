// Alert texts (src/breaker/alerts.ts): Slack's control characters escaped, the spend figure and the
// dashboard link included.
import { describe, expect, it } from "vitest";
import { alertText, dashboardLink, escapeSlack } from "../../src/breaker/alerts.ts";

const SID = "AC0123456789abcdef0123456789abcdef";

describe("alert text", () => {
  it("escapes &, < and > as Slack asks, and nothing else", () => {
    expect(escapeSlack("<!here> a & b <@U1|x> *bold*")).toBe("&lt;!here&gt; a &amp; b &lt;@U1|x&gt; *bold*");
  });

  it("carries the level, the account, the message, today's spend and the link", () => {
    const text = alertText(SID, "trip", "breaker OPEN: crossed day 50 USD <x>", { spendTodayUsd: 51.234, link: dashboardLink("https://guard.example.com/", SID) });
    expect(text).toBe(`[twilio-edge-guard] TRIP ${SID}: breaker OPEN: crossed day 50 USD &lt;x&gt; (spend today 51.23 USD) https://guard.example.com/admin#/account/${SID}`);
  });

  it("links to the first PUBLIC_URL, and to nothing without one", () => {
    expect(dashboardLink("https://a.example, https://b.example", SID)).toBe(`https://a.example/admin#/account/${SID}`);
    expect(dashboardLink(null, SID)).toBeNull();
  });
});
