import { request } from 'node:http';

/** How a request ended, from the client's side. */
export type Outcome =
  | { kind: 'answered'; status: number; body: string }
  /** No connection: nothing listens (any more) at the address. */
  | { kind: 'refused'; code: string }
  /** Connected, then closed before any byte of an answer: the service had not read the request. */
  | { kind: 'turned-away'; code: string }
  /** An answer began and broke off, or none came before the hang guard. */
  | { kind: 'broken'; reason: string };

const NOT_CONNECTED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/**
 * One GET on a connection of its own (no keep-alive), classified. `hangGuardMs` only keeps a stuck request
 * from stalling the suite; it is no verdict on speed.
 */
export function get(url: string, headers: Record<string, string> = {}, hangGuardMs = 60_000): Promise<Outcome> {
  return new Promise((resolve) => {
    let connected = false;
    let answering = false;
    const req = request(url, { agent: false, headers }, (res) => {
      answering = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ kind: 'answered', status: res.statusCode ?? 0, body }));
      res.on('aborted', () => resolve({ kind: 'broken', reason: 'answer cut off' }));
      res.on('error', (err) => resolve({ kind: 'broken', reason: err.message }));
    });
    req.on('socket', (socket) => socket.once('connect', () => (connected = true)));
    req.setTimeout(hangGuardMs, () => req.destroy(new Error(`no answer within the ${hangGuardMs} ms hang guard`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? err.message;
      if (answering) resolve({ kind: 'broken', reason: err.message });
      else if (!connected && NOT_CONNECTED.has(code)) resolve({ kind: 'refused', code });
      else if (connected && (code === 'ECONNRESET' || code === 'EPIPE')) resolve({ kind: 'turned-away', code });
      else resolve({ kind: 'broken', reason: err.message });
    });
    req.end();
  });
}

export interface LoadCounts {
  /** Answered with the expected status. */
  ok: number;
  refused: number;
  turnedAway: number;
  /** Wrong status, or an answer broken off: requests lost. */
  lost: number;
  lostReasons: string[];
}

/**
 * Steady requests from a few clients at once, each on a fresh connection, until stop(). A client stops when the
 * service stops accepting connections (refused), as a Service's clients would be sent elsewhere.
 */
export function steadyLoad(url: string, headers: Record<string, string>, expected: number, clients = 3) {
  const counts: LoadCounts = { ok: 0, refused: 0, turnedAway: 0, lost: 0, lostReasons: [] };
  let stopping = false;
  let firstAnswer: () => void = () => undefined;
  let firstRefused: () => void = () => undefined;
  const answeredOnce = new Promise<void>((r) => (firstAnswer = r));
  const refusedOnce = new Promise<void>((r) => (firstRefused = r));
  const loop = async () => {
    while (!stopping) {
      const outcome = await get(url, headers);
      if (outcome.kind === 'answered') firstAnswer();
      if (outcome.kind === 'answered' && outcome.status === expected) {
        counts.ok++;
      } else if (outcome.kind === 'refused') {
        counts.refused++;
        firstRefused();
        return;
      } else if (outcome.kind === 'turned-away') {
        counts.turnedAway++;
      } else {
        counts.lost++;
        const reason = outcome.kind === 'answered' ? `HTTP ${outcome.status}` : outcome.reason;
        if (counts.lostReasons.length < 5) counts.lostReasons.push(reason);
      }
    }
  };
  const loops = Array.from({ length: clients }, loop);
  return {
    counts,
    /** Resolves at the first answer. */
    answeredOnce,
    /** Resolves when a connection is first refused: the service has closed its listener. */
    refusedOnce,
    async stop(): Promise<LoadCounts> {
      stopping = true;
      await Promise.all(loops);
      return counts;
    },
  };
}
