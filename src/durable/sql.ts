// Small helpers for the SQL the Durable Objects build.

/**
 * `(?, ?, …)` placeholders for `rows` rows of `columns` bound values each, comma-separated, for a
 * multi-row `INSERT … VALUES`: one statement instead of one per row (each `exec` is a cursor object in
 * the isolate, and an event writes several rows: docs/benchmarks.md section 6, the gate's own tail).
 * `literals` follows the placeholders inside each row (constant columns, e.g. ", 0, 0").
 */
export function rowPlaceholders(rows: number, columns: number, literals = ""): string {
  const row = `(${Array.from({ length: columns }, () => "?").join(", ")}${literals})`;
  return Array.from({ length: rows }, () => row).join(", ");
}
