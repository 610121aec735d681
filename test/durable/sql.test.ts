import { describe, expect, it } from "vitest";
import { rowPlaceholders } from "../../src/durable/sql.ts";

describe("rowPlaceholders", () => {
  it("writes one parenthesised row of placeholders per row", () => {
    expect(rowPlaceholders(2, 3)).toBe("(?, ?, ?), (?, ?, ?)");
  });

  it("puts the constant columns after the placeholders of each row", () => {
    expect(rowPlaceholders(2, 2, ", 0")).toBe("(?, ?, 0), (?, ?, 0)");
  });

  it("has rows × columns placeholders", () => {
    const sql = `INSERT INTO t (a, b) VALUES ${rowPlaceholders(4, 2)}`;
    expect(sql.match(/\?/g)).toHaveLength(8);
  });
});
