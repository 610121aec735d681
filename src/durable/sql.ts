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

/**
 * A statement whose text depends only on a row count, built once per count: hot paths pass the same
 * text every time instead of concatenating it per call (garbage on every event). Bounded: callers use
 * a handful of counts (one per window kind or bucket grain at most).
 */
export function perRowCount(build: (rows: number) => string): (rows: number) => string {
  const built = new Map<number, string>();
  return (rows) => {
    let text = built.get(rows);
    if (text === undefined) built.set(rows, (text = build(rows)));
    return text;
  };
}

/** Durable Object SQLite binds at most this many parameters in one statement (developers.cloudflare.com/durable-objects/platform/limits/). */
export const MAX_BOUND_PARAMETERS = 100;

/**
 * Runs `statement(rows)` (built by perRowCount) over `values`, `columns` bound values per row, in as few
 * statements as MAX_BOUND_PARAMETERS allows: one for the usual handful of rows.
 */
export function execRows(sql: SqlStorage, statement: (rows: number) => string, columns: number, values: readonly SqlStorageValue[]): void {
  const perStatement = Math.floor(MAX_BOUND_PARAMETERS / columns) * columns;
  for (let from = 0; from < values.length; from += perStatement) {
    const chunk = values.length <= perStatement ? values : values.slice(from, from + perStatement);
    sql.exec(statement(chunk.length / columns), ...chunk);
  }
}
