import 'reflect-metadata';
import { Controller, type ExecutionContext, Get } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import { randomUUID } from 'node:crypto';
import { Registry } from 'prom-client';
import {
  AllowServiceAccounts,
  Audience,
  K8sAuthModule,
  ServiceAccountGuard,
  TOKEN_AUTHENTICATOR,
} from '@k8s-auth/nestjs';
import { signJwt } from '@k8s-auth/nestjs/testing';
import { scriptMain } from './lib/script';

// The memory part of `npm run bench`, in a process of its own (started with --expose-gc by bench/run.ts): distinct
// tokens, each signed here with a key the API server trusts, go through ServiceAccountGuard.canActivate one by one
// (`concurrency` at a time), and every one of them is reviewed by the real API server. The heap is measured after GC
// at the start, at a checkpoint once the cache is full, and at the end: what it grows by between the last two is the
// growth per token past the cache bound, whatever number of tokens the time budget let through. Prints one JSON line.

export interface MemoryInput {
  kubeconfig: string;
  /** PEM of an ECDSA P-256 key the API server trusts (`--service-account-key-file`): signing is cheap. */
  signingKey: string;
  claims: Record<string, unknown>;
  count: number;
  /** Tokens after which the heap is measured a first time: past the cache bound, so that the cache is full. */
  checkpoint: number;
  concurrency: number;
  /** No new token after this long: the run reports how many went through. */
  maxSeconds: number;
}

export interface MemoryOutput {
  /** Distinct tokens that went through the guard (all of `count`, unless `maxSeconds` ran out first). */
  tokens: number;
  allowed: number;
  refused: number;
  baselineMb: number;
  afterMb: number;
  growthMb: number;
  /** Tokens through at the checkpoint (fewer than asked if `maxSeconds` ran out first), and the heap then. */
  checkpointTokens: number;
  checkpointMb: number;
  peakMb: number;
  cacheEntries: number;
  seconds: number;
}

@Controller()
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class BenchController {
  @Get()
  read(): string {
    return 'ok';
  }
}

/** Nest's own execution context of an HTTP request, as the router hands it to guards. */
function contextFor(token: string): ExecutionContext {
  const request = { headers: { authorization: `Bearer ${token}` } };
  const response = { setHeader: () => undefined };
  return new ExecutionContextHost([request, response, undefined], BenchController, BenchController.prototype.read);
}

const heapMb = () => process.memoryUsage().heapUsed / 2 ** 20;

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  for (let i = 0; i < 3; i++) gc();
}

async function memory(input: MemoryInput): Promise<MemoryOutput> {
  const tokenFor = () => signJwt(input.signingKey, { ...input.claims, jti: randomUUID() });

  const app = await NestFactory.createApplicationContext(
    // The defaults, maxCacheEntries included: this measures the default bound. Reviews in flight are allowed up to the
    // load's concurrency, so that every token is reviewed rather than answered 503.
    K8sAuthModule.forRoot({
      kubeconfig: input.kubeconfig,
      audiences: ['secret-store'],
      metrics: new Registry(),
      maxReviewsInFlight: input.concurrency,
    }),
    { logger: ['error'] },
  );
  const guard = app.get(ServiceAccountGuard);
  // The module's CachedAuthenticator: its accepted answers are what the default bound keeps.
  const cached = app.get(TOKEN_AUTHENTICATOR) as {
    answers: { kept: { good: { clear(): void; size: number } } };
  };
  const answers = cached.answers.kept.good;
  // One call first, so that everything loaded once (kubeconfig, agent, route policy) is in the baseline.
  await guard.canActivate(contextFor(tokenFor()));
  answers.clear();
  collect();
  const baseline = heapMb();

  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, heapMb())), 250);
  const started = Date.now();
  const deadline = started + input.maxSeconds * 1000;
  let next = 0;
  let allowed = 0;
  let refused = 0;
  /** Sends tokens until `until` went through (or the time is up), and waits for the last ones' answers. */
  const runUntil = (until: number) =>
    Promise.all(
      Array.from({ length: input.concurrency }, async () => {
        while (next < until && Date.now() < deadline) {
          next++;
          try {
            if (await guard.canActivate(contextFor(tokenFor()))) allowed++;
          } catch {
            refused++; // 403 or 503: counted, and the run must report none
          }
        }
      }),
    );
  await runUntil(Math.min(input.checkpoint, input.count));
  const checkpointTokens = next;
  collect();
  const checkpointMb = heapMb();
  await runUntil(input.count);
  const seconds = (Date.now() - started) / 1000;
  clearInterval(sampler);
  collect();
  const after = heapMb();
  const cacheEntries = answers.size;
  await app.close();
  return {
    tokens: next,
    allowed,
    refused,
    baselineMb: baseline,
    afterMb: after,
    growthMb: after - baseline,
    checkpointTokens,
    checkpointMb,
    peakMb: peak,
    cacheEntries,
    seconds,
  };
}

scriptMain('BENCH_MEMORY_INPUT', memory);
