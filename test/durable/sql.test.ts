import { describe, expect, it } from "vitest";
import { perRowCount, rowPlaceholders } from "../../src/durable/sql.ts";

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

describe("perRowCount", () => {
  it("builds each row count's statement once and hands the same text back after", () => {
    const built: number[] = [];
    const statement = perRowCount((n) => {
      built.push(n);
      return `VALUES ${rowPlaceholders(n, 2)}`;
    });
    expect([statement(2), statement(1), statement(2), statement(1)]).toEqual(["VALUES (?, ?), (?, ?)", "VALUES (?, ?)", "VALUES (?, ?), (?, ?)", "VALUES (?, ?)"]);
    expect(built).toEqual([2, 1]);
  });
});
