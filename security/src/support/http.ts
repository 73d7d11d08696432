import { type Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import type { SecretLedger } from './ledger';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Milliseconds from sending to the end of the answer. */
  ms: number;
}

/** No answer at all: connection refused or reset, or no answer within the timeout. */
export interface HttpFailure {
  status: 0;
  error: string;
  ms: number;
}

export type HttpOutcome = HttpAnswer | HttpFailure;

export function answered(outcome: HttpOutcome): outcome is HttpAnswer {
  return outcome.status !== 0;
}

export interface CallOptions {
  method?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  agent?: Agent;
}

/**
 * A request through node:http to a loopback URL. The answer's headers and body go into the ledger:
 * what a service sends back is scanned for tokens like its logs are.
 */
export function call(ledger: SecretLedger, url: string, options: CallOptions = {}): Promise<HttpOutcome> {
  const target = new URL(url);
  if (target.hostname !== '127.0.0.1') throw new Error(`The suite only talks to 127.0.0.1, not ${target.hostname}`);
  const started = performance.now();
  return new Promise((resolve) => {
    const req = httpRequest(
      target,
      {
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: options.agent ?? false,
        timeout: options.timeoutMs ?? 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => resolve({ status: 0, error: err.message, ms: performance.now() - started }));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          ledger.record(
            'body',
            `${options.method ?? 'GET'} ${target.pathname}`,
            `${headerBlock(res.rawHeaders)}\n${body}`,
          );
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - started });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer in time')));
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ status: 0, error: err.code ?? err.message, ms: performance.now() - started }),
    );
    req.end();
  });
}

function headerBlock(raw: string[]): string {
  const lines: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`);
  return lines.join('\n');
}

/** A header as it goes on the wire: any bytes, so that node:http's own checks do not stop the test. */
export type RawHeader = [name: string, value: string | Buffer];

export interface RawRequest {
  method?: string;
  /** The request target, as sent (no encoding is applied). */
  path: string | Buffer;
  headers?: RawHeader[];
}

/** Builds an HTTP/1.1 request with `Connection: close`, byte for byte. */
export function buildRequest(request: RawRequest): Buffer {
  const parts: Buffer[] = [
    Buffer.from(`${request.method ?? 'GET'} `, 'latin1'),
    typeof request.path === 'string' ? Buffer.from(request.path, 'latin1') : request.path,
    Buffer.from(' HTTP/1.1\r\nHost: 127.0.0.1\r\n', 'latin1'),
  ];
  for (const [name, value] of request.headers ?? []) {
    parts.push(Buffer.from(`${name}: `, 'latin1'), typeof value === 'string' ? Buffer.from(value, 'latin1') : value);
    parts.push(Buffer.from('\r\n', 'latin1'));
  }
  parts.push(Buffer.from('Connection: close\r\n\r\n', 'latin1'));
  return Buffer.concat(parts);
}

/**
 * Sends raw bytes over a fresh connection and reads the answer until the server closes it. Used
 * where node:http would refuse to send what the test needs: a repeated Authorization header,
 * control characters, bytes that are not ASCII.
 */
export function rawCall(
  ledger: SecretLedger,
  port: number,
  request: RawRequest | Buffer,
  timeoutMs = 15_000,
): Promise<HttpOutcome> {
  const bytes = Buffer.isBuffer(request) ? request : buildRequest(request);
  const started = performance.now();
  return new Promise<HttpOutcome>((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (outcome: HttpOutcome) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(outcome);
    };
    // write, not end: a half-closed connection makes Node's HTTP server abort the request it is serving.
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.setTimeout(timeoutMs, () =>
      finish({ status: 0, error: 'no answer in time', ms: performance.now() - started }),
    );
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A server may answer (e.g. 400) and reset the connection while the request is still being sent.
      const parsed = chunks.length > 0 ? parseAnswer(Buffer.concat(chunks), started) : undefined;
      finish(parsed ?? { status: 0, error: err.code ?? err.message, ms: performance.now() - started });
    });
    socket.on('end', () => {
      const parsed = parseAnswer(Buffer.concat(chunks), started);
      finish(parsed ?? { status: 0, error: 'connection closed without an answer', ms: performance.now() - started });
    });
    socket.on('close', () => {
      if (settled) return;
      const parsed = parseAnswer(Buffer.concat(chunks), started);
      finish(parsed ?? { status: 0, error: 'connection closed without an answer', ms: performance.now() - started });
    });
  }).then((outcome) => {
    if (answered(outcome)) {
      const head = Object.entries(outcome.headers)
        .map(([k, v]) => `${k}: ${String(v)}`)
        .join('\n');
      ledger.record('body', `raw ${outcome.status}`, `${head}\n${outcome.body}`);
    }
    return outcome;
  });
}

function parseAnswer(data: Buffer, started: number): HttpAnswer | undefined {
  const text = data.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine, ...headerLines] = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  if (!status) return undefined;
  const headers: Record<string, string | string[] | undefined> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const existing = headers[name];
    headers[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  let body = data.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
  if (String(headers['transfer-encoding']).toLowerCase() === 'chunked') body = dechunk(body);
  return { status, headers, body: body.toString('utf8'), ms: performance.now() - started };
}

function dechunk(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  while (offset < data.length) {
    const lineEnd = data.indexOf('\r\n', offset);
    if (lineEnd < 0) break;
    const size = parseInt(data.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!size) break;
    out.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** Resolves whether a TCP connection to the port is accepted (true) or refused (false). */
export function canConnect(port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
