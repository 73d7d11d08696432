import { NestFactory } from '@nestjs/core';
import { createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { K8sAuthModule, TOKEN_AUTHENTICATOR, type TokenAuthenticator } from '@k8s-auth/nestjs';
import { scriptMain } from './script';

/** What the benchmark hands this process (JSON in BENCH_VERIFY_INPUT). */
export interface VerifyCostInput {
  kubeconfig: string;
  /**
   * A JSON array of distinct tokens signed with `publicKeyPem`'s key and meant for `audiences`, more than the default
   * cache bound: taken in turn, each is long evicted when it comes again.
   */
  tokensFile: string;
  publicKeyPem: string;
  audiences: string[];
  /** Each round takes every token once, through each of the three. */
  rounds: number;
}

/** CPU per new token in this process, µs, one entry per round. */
export interface VerifyCostOutput {
  tokens: number;
  /** Node's crypto.verify alone. */
  raw: number[];
  /** The module's authenticator for `verification: 'local'` with its answer caches off. */
  strategy: number[];
  /** The same with the default caches, full: every token is a miss, stored, and evicts another. */
  cached: number[];
}

// The local phase's view of the library alone: the guard's authenticator as the module builds it for
// `verification: 'local'` (the API server's JWKS fetched with the kubeconfig's credentials), asked about new tokens in
// a loop beside a raw RS256 verification of the same tokens, in a process the benchmark pins where the stores run.
// What the store adds on top of this is the server's: the request around the check. Prints a VerifyCostOutput.
async function verifyCost(input: VerifyCostInput): Promise<VerifyCostOutput> {
  const tokens = JSON.parse(readFileSync(input.tokensFile, 'utf8')) as string[];
  const key = createPublicKey(input.publicKeyPem);
  const signed = tokens.map((token) => {
    const dot = token.lastIndexOf('.');
    return { data: Buffer.from(token.slice(0, dot)), signature: Buffer.from(token.slice(dot + 1), 'base64url') };
  });
  const authenticatorWith = async (maxCacheEntries?: number) => {
    const context = await NestFactory.createApplicationContext(
      K8sAuthModule.forRoot({
        kubeconfig: input.kubeconfig,
        audiences: input.audiences,
        verification: 'local',
        metrics: false,
        maxCacheEntries,
      }),
      { logger: false },
    );
    return { context, authenticator: context.get<TokenAuthenticator>(TOKEN_AUTHENTICATOR) };
  };
  const strategy = await authenticatorWith(0);
  const cached = await authenticatorWith();
  const cpuPerToken = async (check: (i: number) => unknown) => {
    const before = process.cpuUsage();
    for (let i = 0; i < tokens.length; i++) await check(i);
    const used = process.cpuUsage(before);
    return (used.user + used.system) / tokens.length;
  };
  const raw = (i: number) => {
    if (!verify('sha256', signed[i].data, key, signed[i].signature)) throw new Error('raw verification failed');
  };
  const through = (authenticator: TokenAuthenticator) => async (i: number) => {
    const result = await authenticator.authenticate(tokens[i], input.audiences);
    if (!result.accepted) throw new Error(`token refused: ${result.reason}`);
  };
  try {
    // Not measured: JIT, the signing keys' first fetch, and the caches filled.
    await cpuPerToken(raw);
    await cpuPerToken(through(strategy.authenticator));
    await cpuPerToken(through(cached.authenticator));
    const output: VerifyCostOutput = { tokens: tokens.length, raw: [], strategy: [], cached: [] };
    for (let round = 0; round < input.rounds; round++) {
      output.raw.push(await cpuPerToken(raw));
      output.strategy.push(await cpuPerToken(through(strategy.authenticator)));
      output.cached.push(await cpuPerToken(through(cached.authenticator)));
    }
    return output;
  } finally {
    await strategy.context.close();
    await cached.context.close();
  }
}

scriptMain('BENCH_VERIFY_INPUT', verifyCost);
