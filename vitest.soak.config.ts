import { defineConfig } from "vitest/config";

/**
 * The soak suite (`npm run test:soak`): the field cases at full length
 * with the default timers, one file at a time, since each loads the
 * machine. `npm test` does not run it.
 */
export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.soak.ts"],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
  },
});
