// Which Chromium the browser tests launch (test/support/browser.ts): the packaged one by default,
// CHROMIUM_PATH when set.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { chromiumExecutable } from "../support/browser.ts";

describe("chromiumExecutable", () => {
  it("inflates the @sparticuz/chromium binary into node_modules/.cache, and it runs here", async () => {
    const path = await chromiumExecutable({});
    expect(path).toMatch(/node_modules\/\.cache\/sparticuz-chromium-[\d.]+\/chromium$/);
    const run = spawnSync(path, ["--version"], { encoding: "utf8" });
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^Chromium \d+\./);
  });

  it("returns the same binary on a second call without inflating it again", async () => {
    expect(await chromiumExecutable({})).toBe(await chromiumExecutable({}));
  });

  it("uses CHROMIUM_PATH when it is set", async () => {
    const packaged = await chromiumExecutable({});
    expect(await chromiumExecutable({ CHROMIUM_PATH: packaged })).toBe(packaged);
  });

  it("refuses a CHROMIUM_PATH that does not exist rather than falling back silently", async () => {
    await expect(chromiumExecutable({ CHROMIUM_PATH: "/nonexistent/chromium" })).rejects.toThrow("CHROMIUM_PATH=/nonexistent/chromium does not exist");
  });
});
