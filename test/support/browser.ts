// The browser the Node-side tests drive through playwright-core. It comes from the npm registry: the
// `@sparticuz/chromium` dev dependency ships a Linux x64 headless Chromium inside its tarball
// (bin/chromium.br, brotli-compressed), so `npm install && npm test` needs no system browser and no
// `apt-get`. Its only shared libraries (libnss3, libnspr4, libexpat) are part of Debian's base image.
// CHROMIUM_PATH=/path/to/chromium overrides it with a browser of your own (say, Debian's /usr/bin/chromium).
//
// The package's own executablePath() inflates into a fixed /tmp/chromium and reuses whatever is there
// (a half-written file from a concurrent run, or another version's binary), so we inflate it ourselves:
// into node_modules/.cache, one folder per package version, written to a temporary name and renamed
// into place, so concurrent test files and reruns never see a partial binary.
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { createBrotliDecompress } from "node:zlib";
import { chromium, type Browser } from "playwright-core";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PACKAGE = "@sparticuz/chromium";

/** Flags for a headless browser in a container running as root: no sandbox (root cannot use it), no GPU, no phoning home. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--no-zygote",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The packaged binary, inflated once per package version into node_modules/.cache. */
async function packagedChromium(): Promise<string> {
  const packageDir = join(REPO_ROOT, "node_modules", PACKAGE);
  const manifest = join(packageDir, "package.json");
  if (!existsSync(manifest)) {
    throw new Error(`${PACKAGE} is not installed: run npm install (or set CHROMIUM_PATH to a Chromium of your own)`);
  }
  const { version } = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
  const archive = join(packageDir, "bin", "chromium.br");
  const dir = join(REPO_ROOT, "node_modules", ".cache", `sparticuz-chromium-${version}`);
  const binary = join(dir, "chromium");
  if (existsSync(binary) && statSync(binary).size > 0) return binary;
  mkdirSync(dir, { recursive: true });
  const partial = `${binary}.${process.pid}.partial`;
  try {
    await pipeline(createReadStream(archive), createBrotliDecompress(), createWriteStream(partial, { mode: 0o755 }));
    renameSync(partial, binary);
  } finally {
    rmSync(partial, { force: true });
  }
  return binary;
}

/** The Chromium to launch: CHROMIUM_PATH when set (it must exist), else the one the dev dependency ships. */
export async function chromiumExecutable(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const override = env.CHROMIUM_PATH?.trim();
  if (override) {
    if (!existsSync(override)) throw new Error(`CHROMIUM_PATH=${override} does not exist`);
    return override;
  }
  return packagedChromium();
}

/** A headless Chromium driven through playwright-core; close it in afterAll. */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: await chromiumExecutable(), args: CHROMIUM_ARGS, headless: true });
}
