export { main } from "./main.js";
export { UsageError } from "./errors.js";
