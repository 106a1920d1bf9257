/*
 * The few platform globals this package uses. Node, browsers and edge
 * runtimes all have them; the package compiles against no platform's types
 * so that nothing else slips in.
 */

declare class URL {
  constructor(url: string);
  readonly protocol: string;
  readonly hostname: string;
  readonly port: string;
  readonly pathname: string;
  readonly username: string;
  readonly password: string;
}

declare function setTimeout(callback: () => void, ms: number): unknown;
