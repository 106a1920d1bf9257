/**
 * nginx from PATH for the tests, with the config `switchboard nginx`
 * renders, on a free loopback port and with its pid file, logs and temp
 * paths in a temp prefix. No system nginx is touched: each test stops the
 * nginx it started, by its pid.
 */

import type { NginxConfigOptions } from "../src/nginx-config.js";
import {
  findExecutable,
  runNginx,
  type RunningNginx,
} from "../src/nginx-runner.js";
import { freePort } from "../../server/test/ports.js";

export { freePort };

/** The nginx binary on PATH, or undefined. */
export const NGINX = findExecutable("nginx");

/** Why nginx tests are skipped locally; under CI=true they fail instead. */
export const NO_NGINX = "nginx is not on PATH (apt-get install -y nginx)";

/** Under CI a missing nginx fails the tests rather than skipping them. */
export const NGINX_REQUIRED = process.env.CI === "true";

/** An nginx a test started, listening on 127.0.0.1:`port`. */
export interface TestNginx extends RunningNginx {
  readonly port: number;
  /** `ws://127.0.0.1:<port>/ws` */
  readonly url: string;
}

const running = new Set<TestNginx>();

/** Stops every nginx a test left running (for `afterAll`). */
export async function stopNginxes(): Promise<void> {
  const all = [...running];
  running.clear();
  await Promise.all(all.map((nginx) => nginx.stop("SIGTERM")));
}

/**
 * Starts nginx in front of `options.nodes` on a loopback port, `port` or
 * a free one (to restart an nginx where it was); resolves once it accepts
 * connections. `edit` changes the config first.
 */
export async function startNginx(
  options: Omit<NginxConfigOptions, "listen" | "prefix" | "pid">,
  edit?: (config: string) => string,
  fixedPort?: number,
): Promise<TestNginx> {
  if (!NGINX) throw new Error(NO_NGINX);
  const port = fixedPort ?? (await freePort());
  // 4096 connections keep worker_rlimit_nofile (twice that) under the
  // open-file limits of small machines and containers.
  const nginx = await runNginx(
    NGINX,
    { workerConnections: 4096, ...options },
    { host: "127.0.0.1", port },
    edit,
  );
  const started: TestNginx = {
    ...nginx,
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    stop: (signal) => {
      running.delete(started);
      return nginx.stop(signal);
    },
  };
  running.add(started);
  return started;
}
