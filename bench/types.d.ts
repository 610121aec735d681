// The slices of autocannon's and Express 5's APIs the benchmarks use. Neither package ships types, and
// the benchmark may add only the packages themselves (no @types/*).
declare module "autocannon" {
  import type { EventEmitter } from "node:events";
  export interface AutocannonResult {
    errors: number;
    timeouts: number;
  }
  export interface AutocannonInstance extends EventEmitter, PromiseLike<AutocannonResult> {}
  export default function autocannon(options: Record<string, unknown>): AutocannonInstance;
}

declare module "express" {
  import type { IncomingMessage, Server, ServerResponse } from "node:http";
  export interface Request extends IncomingMessage {
    body?: unknown;
    header(name: string): string | undefined;
  }
  export interface Response extends ServerResponse {
    status(code: number): Response;
    type(contentType: string): Response;
    send(body: string): Response;
  }
  export type NextFunction = (error?: unknown) => void;
  export type Handler = (req: Request, res: Response, next: NextFunction) => void;
  export interface Application {
    use(...handlers: Handler[]): Application;
    post(path: string | string[], ...handlers: Handler[]): Application;
    listen(port: number, host: string, callback: () => void): Server;
  }
  interface Express {
    (): Application;
    urlencoded(options: { extended: boolean }): Handler;
  }
  const express: Express;
  export default express;
}
