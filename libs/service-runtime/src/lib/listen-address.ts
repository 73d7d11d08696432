export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Reads a Go-style listen address, as the seed's services take it: `:8080` (every interface),
 * `127.0.0.1:8080`, `[::1]:8080`, or `:0` for a free port.
 */
export function parseListenAddress(value: string, variable = 'LISTEN_ADDR'): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new Error(`${variable} must look like ':8080' or '127.0.0.1:8080', not '${value}'`);
  }
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}
