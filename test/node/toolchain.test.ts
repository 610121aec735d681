// The README promises that npm scripts run under the Node 22 the project pins, even on a Node 20 machine.
import { describe, expect, it } from "vitest";

describe("toolchain", () => {
  it("runs under the pinned Node 22 (the `node` dev dependency)", () => {
    expect(process.versions.node.split(".")[0]).toBe("22");
  });
});
