// A one-off Worker for the verification tools (bench/verify-ab.ts, bench/verify-parts.ts): ES module
// source, bundled with esbuild (imports resolved from the current directory), run by workerd through
// Miniflare with this repo's compatibility date and flags, on a direct socket.
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_readConfig } from "wrangler";

export async function startScriptWorker(name: string, source: string): Promise<{ url: string; stop(): Promise<void> }> {
  const config = unstable_readConfig({ config: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) });
  const bundled = await build({ stdin: { contents: source, resolveDir: process.cwd(), loader: "js" }, bundle: true, format: "esm", platform: "neutral", target: "es2022", write: false });
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          name,
          compatibilityDate: config.compatibility_date,
          compatibilityFlags: config.compatibility_flags,
          modules: [{ type: "ESModule", path: `${name}.js`, contents: bundled.outputFiles[0]!.text }],
          unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
        },
      ],
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
  );
  try {
    await mf.ready;
    return { url: (await mf.unsafeGetDirectURL(name)).href, stop: () => mf.dispose() };
  } catch (error) {
    await mf.dispose().catch(() => {});
    throw error;
  }
}
