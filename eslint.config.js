import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/", "**/node_modules/", "**/*.d.ts", "**/.next/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { languageOptions: { globals: globals.node } },
  {
    files: ["packages/*/src/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: { "no-console": "error" },
  },
  {
    files: ["packages/cli/src/**/*.ts"],
    rules: { "no-console": "off" },
  },
  {
    // The SDK's `debug: true` option prints through console.debug.
    files: ["packages/client/src/log.ts"],
    rules: { "no-console": ["error", { allow: ["debug"] }] },
  },
  {
    // Tests read JSON bodies of any shape.
    files: ["packages/*/test/**/*.ts", "**/*.test.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_" },
      ],
    },
  },
);
