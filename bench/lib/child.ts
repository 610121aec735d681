// Starting the origin and the Express app as child processes and talking to them over IPC.
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export interface Child {
  url: string;
  pid: number;
  ask<T = Record<string, unknown>>(message: Record<string, unknown>): Promise<T>;
  stop(): Promise<void>;
}

export async function startChild(file: "origin-process.ts" | "express-process.ts"): Promise<Child> {
  const child: ChildProcess = fork(fileURLToPath(new URL(`./${file}`, import.meta.url)), [], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: ["--disable-warning=ExperimentalWarning"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`${file} exited with ${code}`)));
    child.once("message", (m: { type: string; port: number }) => (m.type === "listening" ? resolve(m.port) : reject(new Error(`unexpected ${m.type}`))));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    ask<T>(message: Record<string, unknown>) {
      return new Promise<T>((resolve) => {
        const onMessage = (m: T & { type: string }) => {
          if (m.type !== message.type) return;
          child.off("message", onMessage);
          resolve(m);
        };
        child.on("message", onMessage);
        child.send(message);
      });
    },
    stop() {
      return new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill();
      });
    },
  };
}
