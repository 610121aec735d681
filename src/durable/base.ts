// GuardObject: the small base every Durable Object of the guard extends, as partyserver's `Server` is
// for its parties: it owns the SQLite handle, the versioned schema (migrated in place, in one
// transaction), the object's name, a cached `meta` key/value table, and a logger that redacts the
// configured secrets. Subclasses keep only their own job.
//
//   class GuardDirectory extends GuardObject {
//     constructor(ctx: DurableObjectState, env: GuardEnv) { super(ctx, env, DIRECTORY_SCHEMA); }
//   }
//
// Every class has a `meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)` table; its `schema` key holds
// the version (see versionedSchema). A schema declared `lazy` is created by the first write
// (ensureSchema), not by the constructor: reading an object that was never written (an admin looking up
// an unknown SID) then leaves nothing behind, since a Durable Object with empty storage is not kept.
import { DurableObject } from "cloudflare:workers";
import { getConfig } from "../config/config.ts";
import type { GuardEnv } from "../config/env.ts";
import { Logger } from "../observability/log.ts";

export interface Schema {
  /** The version this code writes. */
  readonly version: number;
  /** Create on the first write instead of at construction (see above). */
  readonly lazy?: boolean;
  /** The version the database holds: 0 when it holds nothing of ours. */
  found(sql: SqlStorage): number;
  /** Brings the database from `found` to `version` (inside the caller's transaction); returns `found`. */
  migrate(sql: SqlStorage): number;
  /**
   * `found` from the meta table's `schema` value (null: no such key), for an object that reads its
   * meta table whole (GuardObject's `wholeMeta`): the version without a query of its own.
   */
  foundInMeta?(schema: string | null): number;
}

export interface Migration {
  /** 1, 2, 3…: applied in order, each once. */
  version: number;
  /** Version 1 must be idempotent (CREATE … IF NOT EXISTS): it also adopts a database written before versioning. */
  up(sql: SqlStorage): void;
}

const META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID";

function hasTable(sql: SqlStorage, name: string): boolean {
  return sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", name).toArray().length > 0;
}

/** The version kept in meta('schema'); 0 without a meta table or without the key. */
export function metaSchemaVersion(sql: SqlStorage, withoutKey = 0): number {
  if (!hasTable(sql, "meta")) return 0;
  const row = sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").toArray()[0];
  return row === undefined ? withoutKey : Number(row.value);
}

/** A schema as an ordered list of migrations, its version in meta('schema'). */
export function versionedSchema(migrations: readonly Migration[], options: { lazy?: boolean } = {}): Schema {
  const steps = [...migrations].sort((a, b) => a.version - b.version);
  steps.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error("migrations are numbered 1, 2, 3… without gaps");
  });
  const version = steps.length;
  return {
    version,
    ...(options.lazy ? { lazy: true } : {}),
    found: (sql) => metaSchemaVersion(sql),
    migrate(sql) {
      const found = metaSchemaVersion(sql);
      if (found === version) return found;
      if (found > version) throw new Error(`storage is schema ${found}, newer than this code (${version})`);
      sql.exec(META_TABLE);
      for (const step of steps) if (step.version > found) step.up(sql);
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", String(version));
      return found;
    },
  };
}

export abstract class GuardObject extends DurableObject<GuardEnv> {
  protected readonly sql: SqlStorage;
  protected readonly logger: Logger;
  readonly #schema: Schema;
  readonly #nameKey: string;
  #ready: boolean;
  /** What the meta table holds, as far as read (null: known absent). */
  readonly #metaValues = new Map<string, string | null>();
  /** Read the meta table whole, in one statement, instead of key by key (see the constructor's options). */
  readonly #wholeMeta: boolean;
  /** Whether #metaValues holds the whole meta table: a key missing from it is absent from storage. */
  #metaWhole = false;

  /**
   * `nameKey`: the meta key the object's name is kept under (AccountGuard keeps its AccountSid as `sid`).
   * `wholeMeta`: the meta table is a handful of keys, most of which every call reads: read it whole in
   * one statement (it also gives the schema version: the schema must have `foundInMeta`). A new instance
   * (after each eviction) then compiles and runs one statement for its meta instead of one per key.
   */
  constructor(ctx: DurableObjectState, env: GuardEnv, schema: Schema, options: { nameKey?: string; wholeMeta?: boolean } = {}) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.#schema = schema;
    this.#nameKey = options.nameKey ?? "name";
    this.#wholeMeta = options.wholeMeta === true && schema.foundInMeta !== undefined;
    this.logger = new Logger(configSecrets(env));
    // A database of an older version is brought up to date now, whatever the schema's laziness. One at
    // the current version (every instance after the first, e.g. after each eviction) opens no transaction.
    const found = this.#wholeMeta && this.#readWholeMeta() ? schema.foundInMeta!(this.#metaValues.get("schema") ?? null) : schema.found(this.sql);
    this.#ready = !(schema.lazy === true && found === 0);
    if (this.#ready && found !== schema.version) {
      this.ctx.storage.transactionSync(() => schema.migrate(this.sql));
      this.#dropMeta();
    }
  }

  /** Whether the schema exists (a lazy schema before its first write does not). */
  protected get ready(): boolean {
    return this.#ready;
  }

  /** Creates a lazy schema; every write path calls it first. */
  protected ensureSchema(): void {
    if (this.#ready) return;
    this.ctx.storage.transactionSync(() => this.#schema.migrate(this.sql));
    this.#dropMeta();
    this.#ready = true;
  }

  /** The object's name, as persisted on first use (ctx.id.name is not relied upon); null before. */
  protected get objectName(): string | null {
    return this.#ready ? this.meta(this.#nameKey) : null;
  }

  /** Persists the name on first use; refuses another name later (an object addressed with another's key). */
  protected identifyAs(name: string): void {
    this.ensureSchema();
    const known = this.meta(this.#nameKey);
    if (known === null) this.setMeta(this.#nameKey, name);
    else if (known !== name) throw new Error(`${this.constructor.name} addressed with another name`);
  }

  /**
   * A meta value, read from storage once and then from memory (hot paths read meta on every call).
   * Every write goes through setMeta/deleteMeta; the copy is dropped when a transaction rolls back.
   */
  protected meta(key: string): string | null {
    const cached = this.#metaValues.get(key);
    if (cached !== undefined) return cached;
    if (this.#metaWhole) return null;
    if (this.#wholeMeta && this.#ready && this.#readWholeMeta()) return this.#metaValues.get(key) ?? null;
    const value = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value ?? null;
    this.#metaValues.set(key, value);
    return value;
  }

  protected setMeta(key: string, value: string): void {
    this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, value);
    this.#metaValues.set(key, value);
  }

  protected deleteMeta(key: string): void {
    this.sql.exec("DELETE FROM meta WHERE key = ?", key);
    this.#metaValues.set(key, null);
  }

  /** Forgets what is cached from storage (storage is the truth: e.g. at the start of an alarm). */
  protected forgetCached(): void {
    this.#dropMeta();
  }

  #dropMeta(): void {
    this.#metaValues.clear();
    this.#metaWhole = false;
  }

  /** Reads the meta table whole into the cache; false when there is no meta table (nothing written yet). */
  #readWholeMeta(): boolean {
    let rows: Array<{ key: string; value: string }>;
    try {
      rows = this.sql.exec<{ key: string; value: string }>("SELECT key, value FROM meta").toArray();
    } catch (error) {
      if (error instanceof Error && error.message.includes("no such table")) return false;
      throw error;
    }
    this.#metaValues.clear();
    for (const row of rows) this.#metaValues.set(row.key, row.value);
    this.#metaWhole = true;
    return true;
  }

  /** Runs `fn` in one SQLite transaction; cached copies of storage are dropped if it throws (rolled back). */
  protected transaction<T>(fn: () => T): T {
    try {
      return this.ctx.storage.transactionSync(fn);
    } catch (error) {
      this.forgetCached();
      this.onRollback();
      throw error;
    }
  }

  /** Subclasses drop their own cached copies of storage here. */
  protected onRollback(): void {}
}

function configSecrets(env: GuardEnv): readonly string[] {
  try {
    return getConfig(env).secrets;
  } catch {
    return [];
  }
}
