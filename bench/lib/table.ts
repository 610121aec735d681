// The benchmark's result table: one row per figure, printed as Markdown (and kept in
// docs/benchmarks.md), and read back by the smoke test (test/node/bench.test.ts).

export interface Row {
  /** "<section number> <section name>", e.g. "3 hot account". */
  section: string;
  what: string;
  measured: string;
  /** The goal, "exact" for a count check, or "(…)" for an informational row. */
  goal: string;
  /** "PASS", "MISS", or "" for an informational row. */
  result: string;
}

const HEADER = "| # | what | measured (one run) | goal | result |\n|---|---|---|---|---|";

/** The rows as a Markdown table, in section order. */
export function formatTable(rows: readonly Row[]): string {
  const sorted = [...rows].sort((a, b) => Number.parseInt(a.section) - Number.parseInt(b.section));
  return [HEADER, ...sorted.map((r) => `| ${r.section} | ${r.what} | ${r.measured} | ${r.goal} | ${r.result} |`)].join("\n");
}

/** The rows of every table formatTable printed into `text` (cells must not contain " | "). */
export function parseTable(text: string): Row[] {
  return text
    .split("\n")
    .filter((line) => /^\| \d /.test(line))
    .map((line) => {
      const [section = "", what = "", measured = "", goal = "", result = ""] = line.slice(2, -1).split(" | ");
      return { section, what, measured, goal, result: result.trim() };
    });
}
